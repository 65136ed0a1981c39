"""The history store's first schema: vehicles, their plates' search keys, images, visits, watch
lists, usage and cameras.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bridge.extensions.history.schema import Id, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "plates",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("normal", sa.String(32), nullable=False, unique=True),
    )
    op.create_table(
        "plate_keys",
        sa.Column("key", sa.String(32), primary_key=True),
        sa.Column("plate_id", Id, sa.ForeignKey("plates.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_table(
        "visits",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("plate", sa.String(32), nullable=False),
        sa.Column("first_seen", UTCDateTime(), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=False),
        sa.Column("cameras", sa.Text, nullable=False),
        sa.Column("open", sa.Boolean, nullable=False),
        sa.Column("entered", sa.Boolean, nullable=False),
    )
    op.create_index("ix_visits_plate_open", "visits", ["plate", "open"])
    op.create_index("ix_visits_open", "visits", ["open"])
    op.create_table(
        "sightings",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("plate_id", Id, sa.ForeignKey("plates.id"), nullable=False),
        sa.Column("plate", sa.String(32), nullable=False),
        sa.Column("candidates", sa.Text, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("region", sa.String(16)),
        sa.Column("camera", sa.String(200), nullable=False),
        sa.Column("seen_at", UTCDateTime(), nullable=False),
        sa.Column("watchlists", sa.Text, nullable=False),
        sa.Column("reader", sa.String(16), nullable=False),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("has_crop", sa.Boolean, nullable=False),
        sa.Column("has_snapshot", sa.Boolean, nullable=False),
        sa.Column("visit_id", Id, sa.ForeignKey("visits.id", ondelete="SET NULL")),
        sa.Column("bytes", sa.Integer, nullable=False),
    )
    op.create_index("ix_sightings_plate_id", "sightings", ["plate_id", "id"])
    op.create_index("ix_sightings_camera", "sightings", ["camera", "id"])
    op.create_index("ix_sightings_seen_at", "sightings", ["seen_at"])
    op.create_index("ix_sightings_visit", "sightings", ["visit_id"])
    op.create_table(
        "sighting_watch",
        sa.Column("list", sa.String(100), primary_key=True),
        sa.Column("sighting_id", Id, sa.ForeignKey("sightings.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_table(
        "images",
        sa.Column("sighting_id", Id, sa.ForeignKey("sightings.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("crop", sa.LargeBinary),
        sa.Column("snapshot", sa.LargeBinary),
    )
    op.create_table(
        "watch_entries",
        sa.Column("list", sa.String(100), primary_key=True),
        sa.Column("normal", sa.String(32), primary_key=True),
        sa.Column("plate", sa.String(32), nullable=False),
        sa.Column("label", sa.String(200)),
        sa.Column("added_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "usage",
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("calls", sa.BigInteger, nullable=False),
        sa.Column("saved_by_reuse", sa.BigInteger, nullable=False),
        sa.Column("saved_by_consensus", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "cameras",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("last_seen", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "cameras",
        "usage",
        "watch_entries",
        "images",
        "sighting_watch",
        "sightings",
        "visits",
        "plate_keys",
        "plates",
    ):
        op.drop_table(table)
