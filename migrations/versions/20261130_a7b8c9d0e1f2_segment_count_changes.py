"""segment count changes

Revision ID: a7b8c9d0e1f2
Revises: c4d2e8f1a9b3
Create Date: 2026-11-30 10:40:00.000000

Live re-evaluation appends member-count changes here instead of updating the segment row,
so concurrent ingesting transactions on PostgreSQL never queue on a popular segment's lock.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7b8c9d0e1f2"
down_revision: str | None = "c4d2e8f1a9b3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "segment_count_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("segment_id", sa.String(length=26), nullable=False),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["segment_id"], ["segments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_segment_count_changes_segment_id"),
        "segment_count_changes",
        ["segment_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_segment_count_changes_segment_id"), table_name="segment_count_changes")
    op.drop_table("segment_count_changes")
