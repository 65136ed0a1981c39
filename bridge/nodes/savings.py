"""The reader calls the bridge's nodes saved, summed over routes, for `bridge/health`.

The recognize, dedupe and consensus nodes each count what they did in `stats()`; the router adds them
up for the health document (`Router.credits`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

__all__ = ["credit_stats"]


def credit_stats(nodes: Iterable[object]) -> dict[str, int]:
    """Every counter of the nodes that keep any (a `stats()` method), summed by name: `frames`,
    `calls`, `calls_saved` and `saved_identical|similar|interval` (recognize), `plates_reported` and
    `plates_suppressed` (dedupe), `vehicle_events|frames|calls` (consensus), and the cache's size."""
    totals: Counter[str] = Counter()
    for node in nodes:
        stats = getattr(node, "stats", None)
        if callable(stats):
            totals.update(stats())
    return dict(totals)
