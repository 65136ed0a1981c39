"""Usage counts the frames the offline reader read (local first): neither paid calls nor reuse.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The months counted before: 0 (nothing told them apart; their offline reads were counted as calls).
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("read_offline", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("read_offline")
