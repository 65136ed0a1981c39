"""The bridge's frame counters, in one place: `bridge/health`, Home Assistant's `bridge/stats`, the
metrics endpoint and the CLI's summary all read this registry; only the router writes it."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from bridge.flows.framequeue import DropCause

DROP_REASONS: dict[DropCause, str] = {
    "camera_queue": "a newer frame of the same camera arrived first",
    "queue_full": "the queue of frames waiting for the reader is full (max_queued_frames/max_queued_bytes)",
    "shutdown": "the bridge is shutting down",
}

Counted = Literal["received", "unrouted", "processed", "too_large", "retained_skipped", "own_topics_ignored"]


@dataclass
class FrameStats:
    """What became of the frames that reached the bridge.

    `received` counts frames a route took as frames: not what extensions listen to (Home Assistant's
    `homeassistant/status`, the bridge's own retained records), not the bridge's own topics, not a
    retained frame the broker sends again, not one over the size limit (`too_large`). So it adds up:
    received = processed + dropped + queued, once the frames in progress are done. `accepted_by_route`
    counts the frames each route queued (the metrics' `plate_bridge_frames_total{route}`).
    """

    received: int = 0
    unrouted: int = 0
    dropped: int = 0
    processed: int = 0
    too_large: int = 0
    retained_skipped: int = 0
    own_topics_ignored: int = 0
    dropped_by: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    accepted_by_route: Counter[str] = field(default_factory=Counter)
    # paho's thread, sources (an extension's submit), the workers and stop() all count.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, name: Counted) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def count_dropped(self, cause: DropCause) -> None:
        with self._lock:
            self.dropped += 1
            self.dropped_by[cause] += 1

    def count_accepted(self, route: str) -> None:
        with self._lock:
            self.accepted_by_route[route] += 1

    def accepted(self) -> dict[str, int]:
        with self._lock:
            return dict(self.accepted_by_route)

    def as_dict(self) -> dict[str, Any]:
        """The counters as `bridge/health` carries them."""
        with self._lock:
            return {
                "received": self.received,
                "processed": self.processed,
                "dropped": self.dropped,
                "dropped_by": dict(self.dropped_by),
                "too_large": self.too_large,
                "retained_skipped": self.retained_skipped,
                "own_topics_ignored": self.own_topics_ignored,
                "unrouted": self.unrouted,
            }
