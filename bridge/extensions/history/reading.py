"""The history store's reading: vehicles searched by plate (within a tolerance), camera, list and
time; their pictures; visits and who is present; the cameras; a month's usage."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Connection, select

from bridge.core.plates import normalize_plate, plate_distance
from bridge.extensions.history import schema as t
from bridge.extensions.history.keys import deletion_keys
from bridge.extensions.history.models import HistoryError, Sighting, Usage, Visit
from bridge.extensions.history.storebase import MAX_LIMIT, MAX_PLATE, StoreBase, sighting_of, visit_of
from bridge.nodes.watchlist import fold

MAX_NEAR_PLATES = 5000


class StoreReading(StoreBase):
    """Searches and look-ups; none of them writes."""

    def search(
        self,
        plate: str | None = None,
        *,
        tolerance: float = 0,
        camera: str | None = None,
        watchlist: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        before_id: int | None = None,
    ) -> list[Sighting]:
        """Vehicles, newest first: of a plate (within `tolerance`, look-alikes counting half, as watch
        lists match), a camera, a list, a time range; `before_id` pages on."""
        if not 1 <= limit <= MAX_LIMIT:
            raise HistoryError(f"limit must be 1-{MAX_LIMIT}, not {limit}")
        if not 0 <= tolerance <= 3:
            raise HistoryError(f"tolerance must be 0-3, not {tolerance}")
        s = t.sightings
        query = select(s)
        with self.engine.connect() as connection:
            if plate is not None:
                normal = normalize_plate(plate)
                if not normal or len(normal) > MAX_PLATE:
                    raise HistoryError(f"{plate[:40]!r} is not a plate to search for")
                plate_ids = self._matching_plates(connection, normal, tolerance)
                if not plate_ids:
                    return []
                query = query.where(s.c.plate_id.in_(plate_ids))
            if camera is not None:
                query = query.where(s.c.camera == camera)
            if watchlist is not None:
                listed = select(t.sighting_watch.c.sighting_id).where(t.sighting_watch.c.list == watchlist)
                query = query.where(s.c.id.in_(listed))
            if since is not None:
                query = query.where(s.c.seen_at >= since)
            if until is not None:
                query = query.where(s.c.seen_at < until)
            if before_id is not None:
                query = query.where(s.c.id < before_id)
            rows = connection.execute(query.order_by(s.c.id.desc()).limit(limit)).mappings().all()
        return [sighting_of(row) for row in rows]

    def _matching_plates(self, connection: Connection, normal: str, tolerance: float) -> list[int]:
        if tolerance == 0:
            found = connection.execute(select(t.plates.c.id).where(t.plates.c.normal == normal)).scalar()
            return [] if found is None else [int(found)]
        if int(tolerance) <= 1:
            # Folded distance <= plate_distance, and it is a whole number: <= 1 is what the keys find.
            rows = connection.execute(
                select(t.plates.c.id, t.plates.c.normal)
                .join(t.plate_keys, t.plate_keys.c.plate_id == t.plates.c.id)
                .where(t.plate_keys.c.key.in_(sorted(deletion_keys(normal))))
                .distinct()
            ).all()
        else:
            # Tolerance 2-3: no index finds these; the distinct plates are scanned, in C first.
            from rapidfuzz import process
            from rapidfuzz.distance import Levenshtein

            rows = connection.execute(select(t.plates.c.id, t.plates.c.normal)).all()
            folded = [fold(row.normal) for row in rows]
            near = process.extract(
                fold(normal), folded, scorer=Levenshtein.distance, score_cutoff=int(tolerance), limit=None
            )
            rows = [rows[index] for _, _, index in near]
        near = sorted(
            (distance, int(row.id))
            for row in rows
            if (distance := plate_distance(normal, row.normal)) <= tolerance
        )
        # A short plate with tolerance 3 is near thousands: the nearest ones, within the database's
        # limit on a statement's parameters.
        return [plate_id for _, plate_id in near[:MAX_NEAR_PLATES]]

    def sighting(self, sighting_id: int) -> Sighting | None:
        with self.engine.connect() as connection:
            row = (
                connection.execute(select(t.sightings).where(t.sightings.c.id == sighting_id))
                .mappings()
                .first()
            )
        return None if row is None else sighting_of(row)

    def image(self, sighting_id: int, kind: Literal["crop", "snapshot"]) -> bytes | None:
        """A vehicle's crop or annotated snapshot (JPEG), None when it has none."""
        if kind not in ("crop", "snapshot"):
            raise HistoryError(f"an image is a crop or a snapshot, not {str(kind)[:20]!r}")
        with self.engine.connect() as connection:
            found = connection.execute(
                select(t.images.c[kind]).where(t.images.c.sighting_id == sighting_id)
            ).scalar()
        return None if found is None else bytes(found)

    def visits(
        self,
        plate: str | None = None,
        *,
        open_only: bool = False,
        limit: int = 50,
        now: datetime | None = None,
    ) -> list[Visit]:
        """Visits, newest first; `open_only`: those still open in the store (see `present()`). A visit
        whose gap has passed at `now` (default: now) is not `open`, even before the sweep closes it."""
        if not 1 <= limit <= MAX_LIMIT:
            raise HistoryError(f"limit must be 1-{MAX_LIMIT}, not {limit}")
        query = select(t.visits)
        if plate is not None:
            query = query.where(t.visits.c.plate == normalize_plate(plate))
        if open_only:
            query = query.where(t.visits.c.open.is_(True))
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(t.visits.c.id.desc()).limit(limit)).mappings().all()
        now = now or datetime.now(UTC)
        return [visit_of(row, self.rules, now) for row in rows]

    def present(self, now: datetime | None = None) -> list[Visit]:
        """The vehicles present now: open visits whose gap (or longest stay) has not passed."""
        now = now or datetime.now(UTC)
        with self.engine.connect() as connection:
            rows = (
                connection.execute(
                    select(t.visits).where(t.visits.c.open.is_(True)).order_by(t.visits.c.id.desc())
                )
                .mappings()
                .all()
            )
        visits = [visit_of(row, self.rules, now) for row in rows]
        return [visit for visit in visits if visit.open]

    def cameras(self) -> list[str]:
        with self.engine.connect() as connection:
            return list(connection.execute(select(t.cameras.c.name).order_by(t.cameras.c.name)).scalars())

    def usage(self, month: str | None = None) -> Usage:
        """Paid calls, calls saved and frames read offline in a month (`YYYY-MM`, this month by
        default); kept past retention."""
        month = month or datetime.now(UTC).strftime("%Y-%m")
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
            raise HistoryError(f"a month is YYYY-MM, not {month[:20]!r}")
        with self.engine.connect() as connection:
            row = connection.execute(select(t.usage).where(t.usage.c.month == month)).mappings().first()
        if row is None:
            return Usage(month, 0, 0, 0, 0)
        return Usage(
            month,
            int(row["calls"]),
            int(row["saved_by_reuse"]),
            int(row["saved_by_consensus"]),
            int(row["read_offline"]),
        )
