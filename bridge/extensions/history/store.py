"""The history store: vehicles, visits, watch lists and usage, in SQLite or PostgreSQL.

One class over SQLAlchemy Core and Alembic: the same statements and the same migrations for the
embedded SQLite file a home user never configures and the PostgreSQL server several replicas share.
Readers (the web page, `plate-bridge web`) and the writer (the history extension's thread) may use one
store from several threads; writes take a lock of the store's own (and `BEGIN IMMEDIATE` in SQLite),
so two writers never race to upgrade a read transaction.

`HistoryStore` is opened here (database.py: the URL, SQLite's settings, the migrations) and made of
parts by what they do: writing.py (vehicles, usage, visits, retention), reading.py (search, pictures,
visits, usage) and watchlists.py (run-time watch lists, CSV), over storebase.py (what they share).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine

from bridge.core.redact import shown_url
from bridge.extensions.history.database import SQLITE_FILE, database_url, migrate, sqlite_pragmas
from bridge.extensions.history.models import HistoryError
from bridge.extensions.history.reading import StoreReading
from bridge.extensions.history.watchlists import StoreWatchLists
from bridge.extensions.history.writing import StoreWriting

if TYPE_CHECKING:
    from bridge.config import WatchListConfig


class HistoryStore(StoreWriting, StoreReading, StoreWatchLists):
    """The store. `open()` makes or upgrades it; every method is safe to call from any thread."""

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
        shown = shown_url(url) if url else str(Path(data_dir) / SQLITE_FILE)
        try:
            engine_url = database_url(url, Path(data_dir))
        except OSError as exc:  # the folder cannot be made (yet): a share not mounted, a file in the way
            raise HistoryError(f"cannot open the history store at {shown}: {type(exc).__name__}") from exc
        if engine_url.startswith("sqlite"):
            engine = create_engine(engine_url, connect_args={"check_same_thread": False, "timeout": 30})
            sqlite_pragmas(engine)
        else:
            engine = create_engine(engine_url, pool_size=pool_size, pool_pre_ping=True)
        try:
            with engine.connect() as connection:
                migrate(connection, shown)
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
