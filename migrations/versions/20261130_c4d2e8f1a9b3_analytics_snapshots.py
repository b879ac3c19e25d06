"""analytics snapshots

Revision ID: c4d2e8f1a9b3
Revises: b3f5a6c7d8e9
Create Date: 2026-11-30 05:22:16.693221

The dashboard overview's figures, computed every minute by the worker (`analytics.refresh`)
and read by the page with one primary-key lookup.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import regulars.db

revision: str = "c4d2e8f1a9b3"
down_revision: str | None = "b3f5a6c7d8e9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "analytics_snapshots",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("computed_at", regulars.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("analytics_snapshots")
