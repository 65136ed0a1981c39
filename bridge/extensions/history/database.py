"""Opening the history store's database: its URL, SQLite's settings, and Alembic's migrations.

`HistoryStore.open` (store.py) makes an engine with these and upgrades the store before it is used;
`upgrade_to` builds a store at an older revision for the tests of upgrades.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event

from bridge.core.errors import ConfigError
from bridge.core.redact import shown_url
from bridge.extensions.history.models import StoreTooNew

log = logging.getLogger(__name__)

SQLITE_FILE = "history.sqlite3"


def database_url(url: str | None, data_dir: Path) -> str:
    if url is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(data_dir / SQLITE_FILE).resolve()}"
    scheme, _, rest = url.partition("://")
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return f"postgresql+psycopg://{rest}"
    if scheme == "sqlite":
        return url
    raise ConfigError(f"history.url: {shown_url(url)} is neither postgresql://... nor sqlite:///...")


def sqlite_pragmas(engine: Engine) -> None:
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


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Raise logger `name` to WARNING for the duration (unless it is set stricter already)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def migrate(connection: Connection, shown: str) -> None:
    """Upgrade the store to this release's head; refuse a store whose revision this release does not
    know (made by a newer one): downgrading it would lose what the newer release keeps.

    Alembic's own INFO lines (its plugins, its context, each step: a dozen at every start) say
    nothing a user needs; one line of ours says when the schema changes. Its warnings still show."""
    with _quiet("alembic"):
        _migrate(connection, shown)


def _migrate(connection: Connection, shown: str) -> None:
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
        head = script.get_current_head()
        if tuple(current) != (head,):
            log.info("history store at %s: schema %s -> %s", shown, ", ".join(current) or "new", head)
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

    engine = create_engine(database_url(url, Path(data_dir)))
    if engine.dialect.name == "sqlite":
        sqlite_pragmas(engine)
    try:
        with engine.connect() as connection:
            config = Config()
            config.set_main_option("script_location", "bridge.extensions.history:migrations")
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            connection.commit()
    finally:
        engine.dispose()
