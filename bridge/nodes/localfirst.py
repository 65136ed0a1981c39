"""The recognize node's side of local first: the route's settings and its watch-list near-misses.

A near-miss is a reading within a list's tolerance of an entry without being exactly that entry (its
plate, or any of its candidates, close to a listed plate). Those frames are confirmed by the paid
reader: an offline misread must neither open a gate nor hide a watched car. A strict list (exact
matches only) counts readings within 1 of an entry as near-misses, for the same reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from bridge.config import RouteConfig, WatchListConfig
from bridge.nodes.watchlist import LiveWatchlists, Reading, WatchList

# The tolerance a near-miss is looked for within, at least: one character off.
NEAR_MISS_TOLERANCE = 1.0


class NearMiss:
    """Tells whether results come near a watch-list entry without matching it exactly: the lists of
    the configuration, and those edited at run time (`live`, the history store's) as they are now."""

    def __init__(self, lists: Sequence[WatchList], live: LiveWatchlists | None = None) -> None:
        self.lists = _widened(lists)
        self.live = live
        self._live_seen: tuple[WatchList, ...] = ()
        self._live_widened: tuple[WatchList, ...] = ()

    def __call__(self, results: Sequence[Mapping[str, Any]]) -> bool:
        lists = self.lists + self._live_lists()
        for result in results:
            reading = Reading.of(result)
            if not reading.normals[0]:
                continue
            for watch_list in lists:
                for match in watch_list.match(reading):
                    exact = match.item["matched"] == "plate" and match.item["distance"] == 0
                    if not exact:
                        return True
        return False

    def _live_lists(self) -> tuple[WatchList, ...]:
        if self.live is None:
            return ()
        current = self.live.lists  # swapped whole by LiveWatchlists.replace: widen each new set once
        if current is not self._live_seen:
            self._live_seen, self._live_widened = current, _widened(current)
        return self._live_widened


def _widened(lists: Sequence[WatchList]) -> tuple[WatchList, ...]:
    """The lists as near-misses are looked for in them: within at least one character, strict ones
    too, every score, plates only (a pattern has no exact entry to be near)."""
    return tuple(
        dataclasses.replace(
            watch_list,
            tolerance=max(watch_list.tolerance, NEAR_MISS_TOLERANCE),
            strict=False,
            min_score=0.0,
            patterns=(),
        )
        for watch_list in lists
        if watch_list.plates
    )


def route_lists(route: RouteConfig, global_lists: Mapping[str, WatchListConfig]) -> list[WatchList]:
    """Every list a frame of the route may be matched against: the global ones and those its watchlist
    nodes define themselves (lists edited at run time are NearMiss's `live`)."""
    chosen = dict(global_lists)
    for spec in route.nodes:
        if spec.type == "watchlist":
            for name, config in (spec.settings.get("lists") or {}).items():
                chosen[f"{route.label}/{name}"] = WatchListConfig.model_validate(config)
    return [WatchList.compile(name, config) for name, config in chosen.items()]


def route_settings(route: RouteConfig, enabled: bool, precision: float) -> tuple[bool, float]:
    """The route's (enabled, precision): its own `local_first` where set, else the reader's."""
    own = route.local_first
    return (
        enabled if own.enabled is None else own.enabled,
        precision if own.precision is None else own.precision,
    )
