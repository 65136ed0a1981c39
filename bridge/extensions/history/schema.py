"""The history store's tables, in SQLAlchemy Core: one description for SQLite and PostgreSQL.

The migrations under `migrations/versions/` create these tables; they are written out there, not
generated from this module at run time, so that a revision keeps meaning what it meant when it was
released. `tests/test_history_store.py` checks that the two agree.

Where things live and why:
- `sightings`: one row per vehicle; small, so search scans few pages. Its images are in `images`,
  fetched one at a time by the page that shows them.
- `plates` and `plate_keys`: each distinct plate once, with its deletion-neighbourhood keys (see
  `keys.py`): how a search with tolerance 1 among a million vehicles reads a few index pages.
- `images`: the crop and the annotated snapshot, in the database, so that every replica's page shows
  every replica's pictures with nothing shared but the database URL, and retention removes a vehicle
  and its pictures in one transaction.
- `visits`, `watch_entries`, `usage`, `cameras`: what they say; `store_meta` (revision 0002) holds the
  watch lists' version that other replicas poll.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect

# SQLite's INTEGER PRIMARY KEY is its rowid (BIGINT would not be); PostgreSQL gets a BIGINT identity.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on both sides: timestamptz in PostgreSQL, naive UTC text in SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the history store takes aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

plates = Table(
    "plates",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("normal", String(32), nullable=False, unique=True),
)

plate_keys = Table(
    "plate_keys",
    metadata,
    Column("key", String(32), primary_key=True),
    Column("plate_id", Id, ForeignKey("plates.id", ondelete="CASCADE"), primary_key=True),
)

visits = Table(
    "visits",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("plate", String(32), nullable=False),
    Column("first_seen", UTCDateTime(), nullable=False),
    Column("last_seen", UTCDateTime(), nullable=False),
    Column("cameras", Text, nullable=False, default="[]"),
    Column("open", Boolean, nullable=False, default=True),
    Column("entered", Boolean, nullable=False, default=False),
    Index("ix_visits_plate_open", "plate", "open"),
    Index("ix_visits_open", "open"),
)

sightings = Table(
    "sightings",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("plate_id", Id, ForeignKey("plates.id"), nullable=False),
    Column("plate", String(32), nullable=False),
    Column("candidates", Text, nullable=False, default="[]"),
    Column("score", Float, nullable=False),
    Column("region", String(16)),
    Column("camera", String(200), nullable=False),
    Column("seen_at", UTCDateTime(), nullable=False),
    Column("watchlists", Text, nullable=False, default="[]"),
    Column("reader", String(16), nullable=False),
    Column("calls", Integer, nullable=False, default=0),
    Column("has_crop", Boolean, nullable=False, default=False),
    Column("has_snapshot", Boolean, nullable=False, default=False),
    Column("visit_id", Id, ForeignKey("visits.id", ondelete="SET NULL")),
    Column("bytes", Integer, nullable=False, default=0),
    Index("ix_sightings_plate_id", "plate_id", "id"),
    Index("ix_sightings_camera", "camera", "id"),
    Index("ix_sightings_seen_at", "seen_at"),
    Index("ix_sightings_visit", "visit_id"),
)

sighting_watch = Table(
    "sighting_watch",
    metadata,
    Column("list", String(100), primary_key=True),
    Column("sighting_id", Id, ForeignKey("sightings.id", ondelete="CASCADE"), primary_key=True),
)

images = Table(
    "images",
    metadata,
    Column("sighting_id", Id, ForeignKey("sightings.id", ondelete="CASCADE"), primary_key=True),
    Column("crop", LargeBinary),
    Column("snapshot", LargeBinary),
)

watch_entries = Table(
    "watch_entries",
    metadata,
    Column("list", String(100), primary_key=True),
    Column("normal", String(32), primary_key=True),
    Column("plate", String(32), nullable=False),
    Column("label", String(200)),
    Column("added_at", UTCDateTime(), nullable=False),
)

usage = Table(
    "usage",
    metadata,
    Column("month", String(7), primary_key=True),
    Column("calls", BigInteger, nullable=False, default=0),
    Column("saved_by_reuse", BigInteger, nullable=False, default=0),
    Column("saved_by_consensus", BigInteger, nullable=False, default=0),
    Column("read_offline", BigInteger, nullable=False, default=0, server_default="0"),  # 0003
)

cameras = Table(
    "cameras",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("last_seen", UTCDateTime(), nullable=False),
)

store_meta = Table(
    "store_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
