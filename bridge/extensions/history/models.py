"""What the history store holds and answers with, without the database: the records the web page,
the watch-list API and presence read, and the store's errors. Importing it costs no SQLAlchemy, so the
extension table (which composes the configuration at every start) stays cheap."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from bridge.core.errors import BridgeError


class HistoryError(BridgeError):
    """Raised when the history store cannot do what it was asked (bad input, a store it cannot use)."""

    code = "history_error"


class StoreTooNew(HistoryError):
    """Raised when the store was made by a newer release (a schema revision this one does not know)."""

    code = "history_store_too_new"


class WatchlistReadOnly(HistoryError):
    """Raised when a watch list defined in the configuration file is edited at run time."""

    code = "watchlist_read_only"


@dataclass(frozen=True, slots=True)
class Sighting:
    """One stored vehicle (a consensus vehicle event, else a plate event after dedupe)."""

    id: int
    plate: str
    candidates: tuple[str, ...]
    score: float
    region: str | None
    camera: str
    seen_at: datetime
    watchlists: tuple[str, ...]
    reader: str
    calls: int
    has_crop: bool
    has_snapshot: bool
    visit_id: int | None


@dataclass(frozen=True, slots=True)
class Visit:
    """Sightings of one plate no further apart than the visit gap; open while the vehicle is present."""

    id: int
    plate: str
    first_seen: datetime
    last_seen: datetime
    cameras: tuple[str, ...]
    open: bool

    @property
    def dwell(self) -> timedelta:
        return self.last_seen - self.first_seen


@dataclass(frozen=True, slots=True)
class WatchEntry:
    list: str
    plate: str
    label: str | None
    source: Literal["yaml", "store"]


@dataclass(frozen=True, slots=True)
class Usage:
    month: str
    calls: int
    saved_by_reuse: int
    saved_by_consensus: int
    read_offline: int = 0
    """Frames the offline reader read (local first): no paid call, and no reuse either."""


@dataclass(frozen=True, slots=True)
class Record:
    """A vehicle to store, as the history extension's writer builds it from an event."""

    plate: str
    camera: str
    seen_at: datetime
    score: float = 0.0
    candidates: tuple[str, ...] = ()
    region: str | None = None
    watchlists: tuple[str, ...] = ()
    reader: str = "cloud"
    calls: int = 0
    crop: bytes | None = None
    snapshot: bytes | None = None


@dataclass(frozen=True, slots=True)
class VisitRules:
    """How sightings become visits.

    A sighting within `gap` of its plate's open visit joins it. A visit closes when an exit camera
    sees the plate (a camera that is both entry and exit: a sighting more than `gap` after the last
    one, the way out), after `gap` without a sighting, or, for a visit that came in through an entry
    camera (the car is parked, out of view), after `max_stay`.
    """

    gap: timedelta = timedelta(minutes=5)
    max_stay: timedelta = timedelta(hours=24)
    roles: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def overdue(self, last_seen: datetime, entered: bool, now: datetime) -> bool:
        return now - last_seen > (self.max_stay if entered else self.gap)
