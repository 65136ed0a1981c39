"""The history store: vehicles, visits, watch lists and usage, in SQLite or PostgreSQL.

One class over SQLAlchemy Core and Alembic: the same statements and the same migrations for the
embedded SQLite file a home user never configures and the PostgreSQL server several replicas share.
Readers (the web page, `plate-bridge web`) and the writer (the history extension's thread) may use one
store from several threads; writes take a lock of the store's own (and `BEGIN IMMEDIATE` in SQLite),
so two writers never race to upgrade a read transaction.
"""

from __future__ import annotations

import csv
import io
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson
from sqlalchemy import Connection, Engine, create_engine, delete, event, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError

from bridge.errors import BridgeError, ConfigError
from bridge.extensions.history import schema as t
from bridge.extensions.history.keys import deletion_keys
from bridge.nodes.watchlist import fold
from bridge.plates import normalize_plate, plate_distance
from bridge.redact import shown_url

if TYPE_CHECKING:
    from bridge.config import WatchListConfig

SQLITE_FILE = "history.sqlite3"
ROW_BYTES = 400
"""What a vehicle's rows and index entries take besides its images, for the size bound (measured in
benchmarks/history.py: SQLite's file over the images' bytes, per vehicle, was ~330 bytes)."""
MAX_CSV_BYTES = 10 * 1024 * 1024
MAX_CSV_ROWS = 200_000
MAX_LIST_NAME = 100
MAX_LABEL = 200
MAX_PLATE = 32
MAX_LIMIT = 1000
MAX_NEAR_PLATES = 5000
_LIST_NAME = re.compile(r"^[\w][\w .\-]*$")


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


def _database_url(url: str | None, data_dir: Path) -> str:
    if url is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(data_dir / SQLITE_FILE).resolve()}"
    scheme, _, rest = url.partition("://")
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return f"postgresql+psycopg://{rest}"
    if scheme == "sqlite":
        return url
    raise ConfigError(f"history.url: {shown_url(url)} is neither postgresql://... nor sqlite:///...")


def _watch_list_name(name: str) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > MAX_LIST_NAME or not _LIST_NAME.match(name):
        raise HistoryError(
            f"a watch list's name is 1-{MAX_LIST_NAME} letters, digits, spaces, dots, dashes or "
            f"underscores, starting with a letter or digit: {str(name)[:MAX_LIST_NAME]!r} is not"
        )
    return name


def _plate(text_: str) -> str:
    normal = normalize_plate(text_) if isinstance(text_, str) else ""
    if not normal or len(normal) > MAX_PLATE or not normal.isalnum():
        raise HistoryError(f"{str(text_)[:40]!r} is not a plate (1-{MAX_PLATE} letters and digits)")
    return normal


class HistoryStore:
    """The store. `open()` makes or upgrades it; every method is safe to call from any thread."""

    def __init__(self, engine: Engine, *, yaml_lists: Mapping[str, WatchListConfig] | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.yaml_lists: Mapping[str, WatchListConfig] = yaml_lists or {}
        self.rules = VisitRules()
        self._write_lock = threading.Lock()

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str | None,
        data_dir: Path,
        *,
        yaml_lists: Mapping[str, WatchListConfig] | None = None,
        pool_size: int = 5,
    ) -> HistoryStore:
        """The store at `url` (None: the SQLite file in `data_dir`), made or upgraded to this release's
        schema. Raises `StoreTooNew` for a store of a newer release, `HistoryError` when it cannot be
        reached."""
        database_url = _database_url(url, Path(data_dir))
        shown = shown_url(url) if url else str(Path(data_dir) / SQLITE_FILE)
        if database_url.startswith("sqlite"):
            engine = create_engine(database_url, connect_args={"check_same_thread": False, "timeout": 30})
            _sqlite_pragmas(engine)
        else:
            engine = create_engine(database_url, pool_size=pool_size, pool_pre_ping=True)
        try:
            with engine.connect() as connection:
                _migrate(connection, shown)
        except HistoryError:
            engine.dispose()
            raise
        except Exception as exc:
            engine.dispose()
            # The driver's message may quote the URL; the shown form never has a password.
            raise HistoryError(f"cannot open the history store at {shown}: {type(exc).__name__}") from exc
        return cls(engine, yaml_lists=yaml_lists)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self._write_lock, self.engine.connect() as plain:
            connection = plain.execution_options(history_write=True)
            with connection.begin():
                yield connection

    # -- writing -------------------------------------------------------------------------------

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
        return _sighting({**values, "id": sighting_id})

    def add_usage(
        self, month: str, *, calls: int = 0, saved_by_reuse: int = 0, saved_by_consensus: int = 0
    ) -> None:
        """Add to a month's counts of reader calls and calls saved (every frame counts, vehicle or not)."""
        values = {
            "month": month,
            "calls": calls,
            "saved_by_reuse": saved_by_reuse,
            "saved_by_consensus": saved_by_consensus,
        }
        with self._writing() as connection:
            self._upsert(
                connection, t.usage, values, ["month"], add=("calls", "saved_by_reuse", "saved_by_consensus")
            )

    def _upsert(
        self,
        connection: Connection,
        table: Any,
        values: Mapping[str, Any],
        keys: list[str],
        *,
        add: Iterable[str] = (),
    ) -> None:
        statement = (pg_insert if self.dialect == "postgresql" else sqlite_insert)(table).values(values)
        changes = {name: statement.excluded[name] for name in values if name not in keys}
        for name in add:
            changes[name] = table.c[name] + statement.excluded[name]
        connection.execute(statement.on_conflict_do_update(index_elements=keys, set_=changes))

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
        return [_visit({**row, "open": False}) for row in due]

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
                # Outside any transaction (the driver's connection is in autocommit, see _sqlite_pragmas);
                # incremental_vacuum frees a page per row it returns: read them all.
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

    # -- reading -------------------------------------------------------------------------------

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
        return [_sighting(row) for row in rows]

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
        return None if row is None else _sighting(row)

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
        return [_visit(row, self.rules, now) for row in rows]

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
        visits = [_visit(row, self.rules, now) for row in rows]
        return [visit for visit in visits if visit.open]

    def cameras(self) -> list[str]:
        with self.engine.connect() as connection:
            return list(connection.execute(select(t.cameras.c.name).order_by(t.cameras.c.name)).scalars())

    def usage(self, month: str | None = None) -> Usage:
        """Paid calls and calls saved in a month (`YYYY-MM`, this month by default); kept past retention."""
        month = month or datetime.now(UTC).strftime("%Y-%m")
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
            raise HistoryError(f"a month is YYYY-MM, not {month[:20]!r}")
        with self.engine.connect() as connection:
            row = connection.execute(select(t.usage).where(t.usage.c.month == month)).mappings().first()
        if row is None:
            return Usage(month, 0, 0, 0)
        return Usage(month, int(row["calls"]), int(row["saved_by_reuse"]), int(row["saved_by_consensus"]))

    # -- watch lists ---------------------------------------------------------------------------

    def watch_entries(self, list_name: str | None = None) -> list[WatchEntry]:
        """The watch lists' plates: those of the configuration file (read-only) and the store's."""
        entries: list[WatchEntry] = []
        for name, config in self.yaml_lists.items():
            if list_name is None or name == list_name:
                entries.extend(WatchEntry(name, plate.plate, plate.label, "yaml") for plate in config.plates)
        query = select(t.watch_entries).order_by(t.watch_entries.c.list, t.watch_entries.c.normal)
        if list_name is not None:
            query = query.where(t.watch_entries.c.list == list_name)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        entries.extend(WatchEntry(row["list"], row["plate"], row["label"], "store") for row in rows)
        return entries

    def store_lists(self) -> dict[str, list[tuple[str, str | None]]]:
        """The store's lists: name -> [(plate, label)], for the watch-list node."""
        lists: dict[str, list[tuple[str, str | None]]] = {}
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(t.watch_entries.c.list, t.watch_entries.c.plate, t.watch_entries.c.label).order_by(
                    t.watch_entries.c.list, t.watch_entries.c.added_at, t.watch_entries.c.normal
                )
            ).all()
        for row in rows:
            lists.setdefault(row.list, []).append((row.plate, row.label))
        return lists

    def watch_version(self) -> int:
        """A number that changes with every watch-list edit, by any replica."""
        with self.engine.connect() as connection:
            found = connection.execute(
                select(t.store_meta.c.value).where(t.store_meta.c.key == "watch_version")
            ).scalar()
        return int(found or 0)

    def _editable(self, list_name: str) -> str:
        name = _watch_list_name(list_name)
        if name in self.yaml_lists:
            raise WatchlistReadOnly(
                f"watch list {name!r} is defined in the configuration file and is read-only at run time; "
                "edit the file, or use a list of another name"
            )
        return name

    def _bump(self, connection: Connection) -> None:
        connection.execute(
            update(t.store_meta)
            .where(t.store_meta.c.key == "watch_version")
            .values(value=t.store_meta.c.value + 1)
        )

    def add_watch(self, list_name: str, plate: str, label: str | None = None) -> WatchEntry:
        """Add a plate to a list of the store (or relabel it); the list is made by its first plate."""
        name = self._editable(list_name)
        normal = _plate(plate)
        if label is not None:
            label = str(label).strip()[:MAX_LABEL] or None
        with self._writing() as connection:
            self._upsert(
                connection,
                t.watch_entries,
                {
                    "list": name,
                    "normal": normal,
                    "plate": normal,
                    "label": label,
                    "added_at": datetime.now(UTC),
                },
                ["list", "normal"],
            )
            self._bump(connection)
        return WatchEntry(name, normal, label, "store")

    def remove_watch(self, list_name: str, plate: str) -> bool:
        """Take a plate off a list of the store; False when it was not on it."""
        name = self._editable(list_name)
        normal = _plate(plate)
        with self._writing() as connection:
            removed = connection.execute(
                delete(t.watch_entries).where(
                    t.watch_entries.c.list == name, t.watch_entries.c.normal == normal
                )
            ).rowcount
            if removed:
                self._bump(connection)
        return bool(removed)

    def import_csv(self, list_name: str, text_: str, *, replace: bool = True) -> int:
        """Load a list from CSV (`plate[,label]` a line; a `plate,label` header is skipped). With
        `replace` (a daily stolen-car list) the list becomes exactly the file's plates. All or
        nothing: a bad line is an error naming it. The number of plates in the file."""
        name = self._editable(list_name)
        if len(text_.encode()) > MAX_CSV_BYTES:
            raise HistoryError(f"a watch-list CSV is at most {MAX_CSV_BYTES // (1024 * 1024)} MiB")
        entries: dict[str, str | None] = {}
        for number, row in enumerate(csv.reader(io.StringIO(text_)), 1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if number == 1 and row[0].strip().lower() == "plate":
                continue
            if len(row) > 2:
                raise HistoryError(f"CSV line {number}: expected plate[,label], got {len(row)} fields")
            try:
                normal = _plate(row[0])
            except HistoryError as exc:
                raise HistoryError(f"CSV line {number}: {exc.message}") from None
            label = row[1].strip()[:MAX_LABEL] if len(row) > 1 else ""
            entries[normal] = label or None
            if len(entries) > MAX_CSV_ROWS:
                raise HistoryError(f"a watch-list CSV has at most {MAX_CSV_ROWS} plates")
        now = datetime.now(UTC)
        with self._writing() as connection:
            if replace:
                connection.execute(delete(t.watch_entries).where(t.watch_entries.c.list == name))
            for normal, label in entries.items():
                self._upsert(
                    connection,
                    t.watch_entries,
                    {"list": name, "normal": normal, "plate": normal, "label": label, "added_at": now},
                    ["list", "normal"],
                )
            self._bump(connection)
        return len(entries)

    def export_csv(self, list_name: str) -> str:
        """A list (of the store or the configuration file) as CSV with a `plate,label` header."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["plate", "label"])
        for entry in self.watch_entries(list_name):
            writer.writerow([entry.plate, entry.label or ""])
        return out.getvalue()


def _sighting(row: Mapping[str, Any]) -> Sighting:
    return Sighting(
        id=int(row["id"]),
        plate=row["plate"],
        candidates=tuple(orjson.loads(row["candidates"])),
        score=float(row["score"]),
        region=row["region"],
        camera=row["camera"],
        seen_at=row["seen_at"],
        watchlists=tuple(orjson.loads(row["watchlists"])),
        reader=row["reader"],
        calls=int(row["calls"]),
        has_crop=bool(row["has_crop"]),
        has_snapshot=bool(row["has_snapshot"]),
        visit_id=None if row["visit_id"] is None else int(row["visit_id"]),
    )


def _visit(row: Mapping[str, Any], rules: VisitRules | None = None, now: datetime | None = None) -> Visit:
    is_open = bool(row["open"])
    if is_open and rules is not None and now is not None:
        is_open = not rules.overdue(row["last_seen"], bool(row["entered"]), now)
    return Visit(
        id=int(row["id"]),
        plate=row["plate"],
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        cameras=tuple(orjson.loads(row["cameras"])),
        open=is_open,
    )


def _sqlite_pragmas(engine: Engine) -> None:
    """WAL (readers never wait for the writer), a busy timeout, space given back after retention;
    and transactions begun by SQLAlchemy, `BEGIN IMMEDIATE` for writes (pysqlite's own handling
    would start them lazily, and a read upgraded to a write can fail at once instead of waiting)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes on a new file: set before any table
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # The WAL file is reused, not shrunk, after a checkpoint: cap what it keeps on disk.
        cursor.execute("PRAGMA journal_size_limit=16777216")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get("history_write")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _migrate(connection: Connection, shown: str) -> None:
    """Upgrade the store to this release's head; refuse a store whose revision this release does not
    know (made by a newer one): downgrading it would lose what the newer release keeps."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", "bridge.extensions.history:migrations")
    script = ScriptDirectory.from_config(config)
    known = {revision.revision for revision in script.walk_revisions()}
    if connection.dialect.name == "postgresql":
        # Replicas starting together: one migrates, the others wait and then find the store current.
        connection.exec_driver_sql("SELECT pg_advisory_lock(727274)")
    try:
        current = MigrationContext.configure(connection).get_current_heads()
        unknown = [revision for revision in current if revision not in known]
        if unknown:
            raise StoreTooNew(
                f"the history store at {shown} was made by a newer release of plate-bridge (schema "
                f"revision {', '.join(unknown)}; this release knows up to {script.get_current_head()}): "
                "upgrade plate-bridge, or point history.url / history.data_dir at another store"
            )
        if connection.in_transaction():
            connection.commit()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        if connection.in_transaction():
            connection.commit()
    finally:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT pg_advisory_unlock(727274)")
            connection.commit()


def upgrade_to(url: str | None, data_dir: Path, revision: str) -> None:
    """Make (or upgrade) a store at an older revision: for tests of upgrades from earlier releases."""
    from alembic import command
    from alembic.config import Config

    engine = create_engine(_database_url(url, Path(data_dir)))
    if engine.dialect.name == "sqlite":
        _sqlite_pragmas(engine)
    try:
        with engine.connect() as connection:
            config = Config()
            config.set_main_option("script_location", "bridge.extensions.history:migrations")
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            connection.commit()
    finally:
        engine.dispose()
