"""What every part of the history store shares: its engine and write lock, a writing transaction,
the dialect's upsert, rows made into the frozen records of models.py, and the bounds on input.

`HistoryStore` (store.py) is made of the parts that build on `StoreBase`: writing.py (vehicles,
usage, visits placed, retention), reading.py (search, pictures, visits, usage) and watchlists.py (the
run-time watch lists and their CSV).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, Engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bridge.extensions.history.models import Sighting, Visit, VisitRules

if TYPE_CHECKING:
    from bridge.config import WatchListConfig

MAX_PLATE = 32
MAX_LIMIT = 1000


class StoreBase:
    """The state and the helpers the store's parts share; see `HistoryStore` for the store itself."""

    def __init__(self, engine: Engine, *, yaml_lists: Mapping[str, WatchListConfig] | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.yaml_lists: Mapping[str, WatchListConfig] = yaml_lists or {}
        self.rules = VisitRules()
        self._write_lock = threading.Lock()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self._write_lock, self.engine.connect() as plain:
            connection = plain.execution_options(history_write=True)
            with connection.begin():
                yield connection

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


def sighting_of(row: Mapping[str, Any]) -> Sighting:
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


def visit_of(row: Mapping[str, Any], rules: VisitRules | None = None, now: datetime | None = None) -> Visit:
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
