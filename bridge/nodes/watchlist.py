"""Watch-list node: say which plates of a frame are on a named list (family, blocked, ...).

Every result's plate and its candidates are compared with each list's plates in the normal form of
`bridge.plates` (case, spaces and dashes ignored) within the list's tolerance, where O/0, I/1, B/8...
count half, and fully matched against its patterns. The matches ride in `msg.metadata["watched"]`,
best first, in the shape `bridge.events.plate_event` publishes as the event's `watched` array.

A strict list (access control: `strict: true`) is matched by a result's own plate only, exactly, with
at least the list's score, and never by a reading reused without proof that its plate is the one in
view (`cached_reason: interval`): `AB12CDF` must not open the gate of `AB12CDE`, nor a candidate the
reader itself ranked lower.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from bridge.config import WatchedPlate as WatchedPlateConfig
from bridge.config import WatchListConfig
from bridge.errors import ConfigError
from bridge.messages import Message
from bridge.nodes.base import Node, NodeContext, NodeSettings
from bridge.plates import CONFUSABLE_PAIRS, normalize_plate, plate_distance

METADATA_KEY = "watched"
UNPROVEN_REUSE = ("interval",)
"""Reasons a reading was reused that say nothing of the plate in view (bridge/nodes/recognize.py)."""


def _look_alike_classes() -> dict[int, str]:
    """Each character of `CONFUSABLE_PAIRS` to one representative of its class of look-alikes
    (O, D, Q and 0 are one class: O/0, D/0 and Q/0 are each a pair)."""
    classes: list[set[str]] = []
    for pair in CONFUSABLE_PAIRS:
        joined = set(pair).union(*(group for group in classes if group & set(pair)))
        classes = [group for group in classes if not group & set(pair)] + [joined]
    return {ord(char): min(group) for group in classes for char in group}


_FOLD = _look_alike_classes()


def fold(normal: str) -> str:
    """A plate with its look-alikes made equal. A substitution between look-alikes costs less than 1
    and anything else costs 1, so the plain edit distance of folded plates is a lower bound of
    `plate_distance`: a cheap, exact test of which entries cannot be within a tolerance."""
    return normal.translate(_FOLD)


class WatchlistSettings(NodeSettings):
    lists: dict[str, WatchListConfig] = Field(
        default_factory=dict, description="This route's own lists, by name, in the form of `watchlists:`."
    )
    use: list[str] | None = Field(
        None, description="Which global `watchlists:` to match as well; null: all of them, []: none."
    )
    only_watched: bool = Field(False, description="Drop the message when no plate is on any list.")
    max_matches: int = Field(10, ge=1, description="Most matches an event carries (the best ones).")

    @field_validator("lists")
    @classmethod
    def _named(cls, value: dict[str, WatchListConfig]) -> dict[str, WatchListConfig]:
        if "" in value:
            raise ValueError("a list needs a non-empty name")
        return value


@dataclass(frozen=True, slots=True)
class Reading:
    """One result to match: its plate, then each other candidate, as read (`texts`) and in normal form
    (`normals`). The first candidate is usually the plate itself, so it is not compared twice."""

    texts: tuple[str, ...]
    normals: tuple[str, ...]
    score: float = 1.0
    """The reader's score of the plate (1 when it gave none)."""

    @classmethod
    def of(cls, result: Mapping[str, Any]) -> Reading:
        plate = str(result.get("plate") or "")
        score = result.get("score")
        texts, normals = [plate], [normalize_plate(plate)]
        for candidate in result.get("candidates") or ():
            text = candidate.get("plate") if isinstance(candidate, Mapping) else None
            if isinstance(text, str) and (normal := normalize_plate(text)) and normal not in normals:
                texts.append(text)
                normals.append(normal)
        numeric = isinstance(score, int | float) and not isinstance(score, bool)
        return cls(tuple(texts), tuple(normals), float(score) if numeric else 1.0)

    @property
    def plate(self) -> str:
        return self.texts[0]


@dataclass(frozen=True, slots=True)
class Match:
    """One list entry (or pattern) matched by one result; `rank` orders matches best first."""

    rank: tuple[float, bool, bool, int]  # distance, via a candidate, via a pattern, entry position
    item: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WatchedPlate:
    text: str  # as configured: what events show as `entry`
    normal: str
    label: str | None


@dataclass(frozen=True, slots=True)
class WatchList:
    """One list ready to match: its plates in normal and folded form, its patterns compiled."""

    name: str
    plates: tuple[WatchedPlate, ...]
    folded: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]
    tolerance: float
    strict: bool = False
    min_score: float = 0.0

    @classmethod
    def compile(cls, name: str, config: WatchListConfig) -> WatchList:
        plates = tuple(WatchedPlate(p.plate, normalize_plate(p.plate), p.label) for p in config.plates)
        return cls(
            name=name,
            plates=plates,
            folded=tuple(fold(plate.normal) for plate in plates),
            patterns=tuple(re.compile(pattern, re.IGNORECASE) for pattern in config.patterns),
            tolerance=config.tolerance,
            strict=config.strict,
            min_score=config.lowest_score,
        )

    def match(self, reading: Reading) -> Iterator[Match]:
        """Each plate and pattern of the list that `reading` matches, once, by its best reading."""
        # Here, not at the top: a bridge without watch lists does not load rapidfuzz (~6 MB resident).
        from rapidfuzz import process
        from rapidfuzz.distance import Levenshtein

        if reading.score < self.min_score:
            return
        if self.strict:
            yield from self._match_exactly(reading)
            return
        best: dict[int, tuple[float, int]] = {}  # entry position -> (distance, reading index)
        cutoff = int(self.tolerance)
        for index, normal in enumerate(reading.normals):
            if not normal:  # an empty plate is no reading: it would be within 1 of every 1-character entry
                continue
            # The folded edit distance (in C) rules out nearly every entry; the survivors get the
            # exact, slower `plate_distance`. 2 results x 6 readings x 1,000 plates: ~1 ms, not ~1 s.
            near = process.extract(
                fold(normal), self.folded, scorer=Levenshtein.distance, score_cutoff=cutoff, limit=None
            )
            for _, _, position in near:
                distance = plate_distance(normal, self.plates[position].normal)
                if distance <= self.tolerance and (position not in best or distance < best[position][0]):
                    best[position] = (distance, index)
        for position in sorted(best):
            distance, index = best[position]
            entry = self.plates[position]
            kind = "plate" if index == 0 else "candidate"
            yield self._match(entry.text, entry.label, distance, reading, index, kind, position)
        for position, pattern in enumerate(self.patterns):
            for index, normal in enumerate(reading.normals):
                if normal and pattern.fullmatch(normal):
                    yield self._match(pattern.pattern, None, 0.0, reading, index, "pattern", position)
                    break

    def _match_exactly(self, reading: Reading) -> Iterator[Match]:
        """A strict list: the result's own plate, equal to an entry (or fully matching a pattern)."""
        normal = reading.normals[0]
        if not normal:
            return
        for position, entry in enumerate(self.plates):
            if entry.normal == normal:
                yield self._match(entry.text, entry.label, 0.0, reading, 0, "plate", position)
        for position, pattern in enumerate(self.patterns):
            if pattern.fullmatch(normal):
                yield self._match(pattern.pattern, None, 0.0, reading, 0, "pattern", position)

    def _match(
        self,
        entry: str,
        label: str | None,
        distance: float,
        reading: Reading,
        index: int,
        kind: str,
        position: int,
    ) -> Match:
        item = {
            "list": self.name,
            "entry": entry,
            "label": label,
            "distance": distance,
            "plate": reading.plate,
            "candidate": reading.texts[index],
            "matched": kind,
        }
        return Match((distance, index > 0, kind == "pattern", position), item)


def match_results(
    lists: Sequence[WatchList],
    results: Sequence[Mapping[str, Any]],
    limit: int | None = None,
    *,
    proven: bool = True,
) -> list[dict[str, Any]]:
    """The matches of `results` against `lists`, best first: smallest distance, the plate before a
    candidate, a listed plate before a pattern, then in the order of the results, lists and entries.

    `proven`: the results were read from this frame, or reused with proof that its plates are the
    same; strict lists match nothing otherwise."""
    ranked: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    for result_index, result in enumerate(results):
        reading = Reading.of(result)
        if not any(reading.normals):
            continue
        for list_index, watch_list in enumerate(lists):
            if watch_list.strict and not proven:
                continue
            for match in watch_list.match(reading):
                distance, via_candidate, via_pattern, position = match.rank
                key = (distance, via_candidate, via_pattern, result_index, list_index, position)
                ranked.append((key, match.item))
    ranked.sort(key=lambda pair: pair[0])
    return [item for _, item in ranked[:limit]]


class LiveWatchlists:
    """Watch lists that change while the bridge runs (the history store's), shared by every route's
    watchlist node: `replace()` swaps them whole, and the next frame of any route is matched against
    the new lists; no restart, no lock on the frame path (reading one attribute is atomic)."""

    def __init__(self, tolerance: float = 1.0) -> None:
        self.tolerance = tolerance
        self.lists: tuple[WatchList, ...] = ()
        self._lock = threading.Lock()

    def replace(self, lists: Mapping[str, Sequence[tuple[str, str | None]]]) -> None:
        """The lists from now on: name -> [(plate, label)]."""
        compiled = tuple(
            WatchList.compile(
                name,
                WatchListConfig(
                    plates=[WatchedPlateConfig(plate=plate, label=label) for plate, label in entries],
                    tolerance=self.tolerance,
                ),
            )
            for name, entries in lists.items()
            if entries
        )
        with self._lock:
            self.lists = compiled


def resolve_lists(
    settings: WatchlistSettings,
    global_lists: Mapping[str, WatchListConfig],
    where: str = "watchlist",
    *,
    allow_empty: bool = False,
) -> tuple[WatchList, ...]:
    """The lists a node matches: the global ones it uses (all by default), then its own.

    `where` names the node in errors (`routes[gate].nodes.watchlist`)."""
    if "" in global_lists:
        raise ConfigError("watchlists: a list needs a non-empty name")
    names = list(global_lists) if settings.use is None else settings.use
    unknown = [name for name in names if name not in global_lists]
    if unknown:
        known = ", ".join(sorted(global_lists)) or "none are defined"
        raise ConfigError(f"{where}.use: unknown lists {unknown} (watchlists: {known})")
    clashes = sorted(set(names) & set(settings.lists))
    if clashes:
        raise ConfigError(f"{where}.lists: {clashes} have the names of global watch lists it uses")
    chosen = [(name, global_lists[name]) for name in names] + list(settings.lists.items())
    if not chosen and not allow_empty:
        raise ConfigError(f"{where}: no lists to match (give it `lists:` or define `watchlists:`)")
    return tuple(WatchList.compile(name, config) for name, config in chosen)


def _merge(earlier: Sequence[Mapping[str, Any]], later: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A second watch-list node in a route adds to the first one's matches: each (list, entry, plate)
    once, re-ranked; the sort is stable, so each node's own order holds among equals."""
    seen: set[tuple[Any, ...]] = set()
    merged: list[dict[str, Any]] = []
    for item in [*map(dict, earlier), *later]:
        key = (item["list"], item["entry"], item["plate"])
        if key not in seen:
            seen.add(key)
            merged.append(item)
    merged.sort(key=lambda m: (m["distance"], m["matched"] == "candidate", m["matched"] == "pattern"))
    return merged


class WatchlistNode(Node):
    """Adds the frame's watch-list matches to `metadata["watched"]`: an empty tuple when none matched."""

    type = "watchlist"
    Settings = WatchlistSettings
    settings: WatchlistSettings

    def __init__(self, settings: NodeSettings, context: NodeContext) -> None:
        super().__init__(settings, context)
        # The run-time lists (the history store's) join a node that matches every global list.
        self.live = context.live_watchlists if self.settings.use is None else None
        # Resolved here, not on the first frame: a wrong list name is a configuration error at start.
        self.lists = resolve_lists(
            self.settings,
            context.watchlists,
            f"routes[{context.route.label}].nodes.{self.type}",
            allow_empty=self.live is not None,
        )

    def process(self, msg: Message) -> Message | None:
        results = (msg.result or {}).get("results") or ()
        # A reading reused by `interval` is the camera's last one, with nothing to say its plate is
        # the one in view now: strict lists do not act on it.
        proven = msg.metadata.get("cached_reason") not in UNPROVEN_REUSE
        lists = self.lists if self.live is None else self.lists + self.live.lists
        matches = match_results(lists, results, self.settings.max_matches, proven=proven)
        earlier = msg.metadata.get(METADATA_KEY)
        if earlier:
            matches = _merge(earlier, matches)[: self.settings.max_matches]
        if not matches and self.settings.only_watched:
            return None
        return msg.replace(metadata={**msg.metadata, METADATA_KEY: tuple(matches)})
