"""The history store's writing: vehicles placed in their visits, usage counts, visits closed when
overdue, retention, and the sizes retention bounds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from sqlalchemy import Connection, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError

from bridge.core.plates import normalize_plate
from bridge.extensions.history import schema as t
from bridge.extensions.history.keys import deletion_keys
from bridge.extensions.history.models import Record, Sighting, Visit
from bridge.extensions.history.storebase import MAX_PLATE, StoreBase, sighting_of, visit_of

ROW_BYTES = 400
"""What a vehicle's rows and index entries take besides its images, for the size bound (measured in
benchmarks/history.py: SQLite's file over the images' bytes, per vehicle, was ~330 bytes)."""


class StoreWriting(StoreBase):
    """Vehicles, usage and visits into the store; retention out of it."""

    def record(self, records: Sequence[Record]) -> list[Sighting]:
        """Store vehicles (one transaction), placing each in its visit; the stored sightings."""
        for attempt in range(3):
            try:
                with self._writing() as connection:
                    return [self._record_one(connection, item) for item in records]
            except OperationalError:
                # Replicas writing the same new plates in another order can deadlock on PostgreSQL;
                # it aborts one transaction, which is safe to run again.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _record_one(self, connection: Connection, item: Record) -> Sighting:
        normal = normalize_plate(item.plate)[:MAX_PLATE] or "?"
        plate_id = self._plate_id(connection, normal)
        visit_id = self._place_in_visit(connection, normal, item.camera, item.seen_at)
        size = ROW_BYTES + len(item.crop or b"") + len(item.snapshot or b"")
        values = {
            "plate_id": plate_id,
            "plate": item.plate.upper()[:MAX_PLATE],
            "candidates": orjson.dumps(list(item.candidates)).decode(),
            "score": float(item.score),
            "region": item.region,
            "camera": item.camera[:200],
            "seen_at": item.seen_at,
            "watchlists": orjson.dumps(list(item.watchlists)).decode(),
            "reader": item.reader[:16],
            "calls": int(item.calls),
            "has_crop": item.crop is not None,
            "has_snapshot": item.snapshot is not None,
            "visit_id": visit_id,
            "bytes": size,
        }
        sighting_id = connection.execute(insert(t.sightings).values(values)).inserted_primary_key[0]
        if item.watchlists:
            connection.execute(
                insert(t.sighting_watch),
                [{"list": name, "sighting_id": sighting_id} for name in dict.fromkeys(item.watchlists)],
            )
        if item.crop is not None or item.snapshot is not None:
            connection.execute(
                insert(t.images).values(sighting_id=sighting_id, crop=item.crop, snapshot=item.snapshot)
            )
        self._upsert(connection, t.cameras, {"name": values["camera"], "last_seen": item.seen_at}, ["name"])
        return sighting_of({**values, "id": sighting_id})

    def add_usage(
        self,
        month: str,
        *,
        calls: int = 0,
        saved_by_reuse: int = 0,
        saved_by_consensus: int = 0,
        read_offline: int = 0,
    ) -> None:
        """Add to a month's counts of reader calls, calls saved and frames read offline (every frame
        counts, vehicle or not)."""
        values = {
            "month": month,
            "calls": calls,
            "saved_by_reuse": saved_by_reuse,
            "saved_by_consensus": saved_by_consensus,
            "read_offline": read_offline,
        }
        with self._writing() as connection:
            self._upsert(
                connection,
                t.usage,
                values,
                ["month"],
                add=("calls", "saved_by_reuse", "saved_by_consensus", "read_offline"),
            )

    def _plate_id(self, connection: Connection, normal: str) -> int:
        found = connection.execute(select(t.plates.c.id).where(t.plates.c.normal == normal)).scalar()
        if found is not None:
            return int(found)
        statement = (pg_insert if self.dialect == "postgresql" else sqlite_insert)(t.plates)
        connection.execute(statement.values(normal=normal).on_conflict_do_nothing(index_elements=["normal"]))
        plate_id = int(
            connection.execute(select(t.plates.c.id).where(t.plates.c.normal == normal)).scalar_one()
        )
        # Another replica may have added the same new plate at the same moment: its keys are ours.
        keys = (pg_insert if self.dialect == "postgresql" else sqlite_insert)(t.plate_keys)
        connection.execute(
            keys.on_conflict_do_nothing(index_elements=["key", "plate_id"]),
            [{"key": key, "plate_id": plate_id} for key in sorted(deletion_keys(normal))],
        )
        return plate_id

    def _place_in_visit(self, connection: Connection, normal: str, camera: str, seen_at: datetime) -> int:
        rules = self.rules
        role = rules.roles.get(camera, frozenset())
        row = (
            connection.execute(
                select(t.visits)
                .where(t.visits.c.plate == normal, t.visits.c.open.is_(True))
                .order_by(t.visits.c.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        if row is not None and rules.overdue(row["last_seen"], row["entered"], seen_at):
            connection.execute(update(t.visits).where(t.visits.c.id == row["id"]).values(open=False))
            row = None
        if row is None:
            entered = "entry" in role
            closes = "exit" in role and not entered
            result = connection.execute(
                insert(t.visits).values(
                    plate=normal,
                    first_seen=seen_at,
                    last_seen=seen_at,
                    cameras=orjson.dumps([camera]).decode(),
                    open=not closes,
                    entered=entered,
                )
            )
            return int(result.inserted_primary_key[0])
        cameras = list(orjson.loads(row["cameras"]))
        if camera not in cameras:
            cameras.append(camera)
        since = seen_at - row["last_seen"]
        closes = "exit" in role and ("entry" not in role or since > rules.gap)
        connection.execute(
            update(t.visits)
            .where(t.visits.c.id == row["id"])
            .values(
                first_seen=min(row["first_seen"], seen_at),
                last_seen=max(row["last_seen"], seen_at),
                cameras=orjson.dumps(cameras).decode(),
                open=not closes,
                entered=row["entered"] or ("entry" in role and not closes),
            )
        )
        return int(row["id"])

    def close_overdue_visits(self, now: datetime | None = None) -> list[Visit]:
        """Close the open visits whose gap (or longest stay) has passed; the visits closed."""
        now = now or datetime.now(UTC)
        rules = self.rules
        with self._writing() as connection:
            rows = connection.execute(select(t.visits).where(t.visits.c.open.is_(True))).mappings().all()
            due = [row for row in rows if rules.overdue(row["last_seen"], row["entered"], now)]
            if due:
                connection.execute(
                    update(t.visits).where(t.visits.c.id.in_([row["id"] for row in due])).values(open=False)
                )
        return [visit_of({**row, "open": False}) for row in due]

    def apply_retention(
        self,
        *,
        max_age: timedelta | None,
        max_bytes: int | None,
        now: datetime | None = None,
        batch: int = 2000,
    ) -> int:
        """Delete the oldest vehicles (and their images, keys, emptied visits) beyond `max_age` or
        while the stored bytes exceed `max_bytes`; the number of vehicles deleted."""
        now = now or datetime.now(UTC)
        deleted = 0
        if max_age is not None:
            cutoff = now - max_age
            while True:
                with self.engine.connect() as connection:
                    ids = (
                        connection.execute(
                            select(t.sightings.c.id).where(t.sightings.c.seen_at < cutoff).limit(batch)
                        )
                        .scalars()
                        .all()
                    )
                if not ids:
                    break
                deleted += self._delete_sightings(list(ids))
        if max_bytes is not None:
            while True:
                with self.engine.connect() as connection:
                    total, count = connection.execute(
                        select(func.coalesce(func.sum(t.sightings.c.bytes), 0), func.count())
                    ).one()
                    if total <= max_bytes or not count:
                        break
                    average = max(1, total // count)
                    # A little beyond the bound, so that the next few vehicles do not each trigger a pass.
                    wanted = min(batch, max(1, -(-(total - max_bytes) // average) + count // 100))
                    ids = (
                        connection.execute(select(t.sightings.c.id).order_by(t.sightings.c.id).limit(wanted))
                        .scalars()
                        .all()
                    )
                deleted += self._delete_sightings(list(ids))
        if deleted:
            self._reclaim()
        return deleted

    def _reclaim(self) -> None:
        """Give the space of deleted vehicles back: SQLite returns free pages to the file system
        (auto_vacuum=INCREMENTAL), PostgreSQL marks the dead rows' space reusable at once rather than
        at autovacuum's next pass (pictures are most of a store: they must not pile up meanwhile)."""
        with self._write_lock:
            if self.dialect == "sqlite":
                # Outside any transaction (the driver's connection is in autocommit, see
                # database.sqlite_pragmas); incremental_vacuum frees a page per row it returns: read them all.
                raw = self.engine.raw_connection()
                try:
                    raw.cursor().execute("PRAGMA incremental_vacuum").fetchall()
                    raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                finally:
                    raw.close()
                return
            with self.engine.connect() as plain:
                connection = plain.execution_options(isolation_level="AUTOCOMMIT")
                connection.exec_driver_sql("VACUUM images, sightings, sighting_watch, plate_keys, plates")

    def _delete_sightings(self, ids: list[int]) -> int:
        with self._writing() as connection:
            gone = connection.execute(
                select(t.sightings.c.plate_id, t.sightings.c.visit_id).where(t.sightings.c.id.in_(ids))
            ).all()
            connection.execute(delete(t.images).where(t.images.c.sighting_id.in_(ids)))
            connection.execute(delete(t.sighting_watch).where(t.sighting_watch.c.sighting_id.in_(ids)))
            connection.execute(delete(t.sightings).where(t.sightings.c.id.in_(ids)))
            plate_ids = {row.plate_id for row in gone}
            still = set(
                connection.execute(
                    select(t.sightings.c.plate_id).where(t.sightings.c.plate_id.in_(plate_ids)).distinct()
                ).scalars()
            )
            orphans = list(plate_ids - still)
            if orphans:
                connection.execute(delete(t.plate_keys).where(t.plate_keys.c.plate_id.in_(orphans)))
                connection.execute(delete(t.plates).where(t.plates.c.id.in_(orphans)))
            visit_ids = {row.visit_id for row in gone if row.visit_id is not None}
            kept = set(
                connection.execute(
                    select(t.sightings.c.visit_id).where(t.sightings.c.visit_id.in_(visit_ids)).distinct()
                ).scalars()
            )
            empty = list(visit_ids - kept)
            if empty:
                connection.execute(
                    delete(t.visits).where(t.visits.c.id.in_(empty), t.visits.c.open.is_(False))
                )
        return len(gone)

    def stored_bytes(self) -> int:
        """The vehicles' accounted bytes (images and an estimate of their rows): what `max_bytes` bounds."""
        with self.engine.connect() as connection:
            return int(
                connection.execute(select(func.coalesce(func.sum(t.sightings.c.bytes), 0))).scalar_one()
            )

    def disk_bytes(self) -> int:
        """What the store takes on disk: SQLite's file (and its WAL), PostgreSQL's tables and indexes."""
        with self.engine.connect() as connection:
            if self.dialect == "sqlite":
                pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()
                size = connection.exec_driver_sql("PRAGMA page_size").scalar_one()
                path = Path(self.engine.url.database or "")
                wal = path.with_name(path.name + "-wal")
                return int(pages * size) + (wal.stat().st_size if wal.exists() else 0)
            names = [table.name for table in t.metadata.sorted_tables]
            total = 0
            for name in names:
                total += int(
                    connection.execute(text("SELECT pg_total_relation_size(:n)"), {"n": name}).scalar_one()
                )
            return total
