"""Alembic's environment for the history store: always run by `HistoryStore.open` on a connection
it passes in (`config.attributes["connection"]`), never from an alembic.ini."""

from __future__ import annotations

from alembic import context

from bridge.extensions.history.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
