"""segment history indexed by segment and customer

Revision ID: d6e2f3a4b5c7
Revises: a7b8c9d0e1f2
Create Date: 2026-11-30 19:45:00.000000

Live re-evaluation closes a customer's open stay in a segment (segment_id = ? AND customer_id
IN (...)). With an index on segment_id alone, SQLite walked every stay of the segment: 5 ms
per exit at 100,000 members, holding the write lock. The composite index also serves every
query that named the segment alone, so it replaces that index.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "d6e2f3a4b5c7"
down_revision: str | None = "a7b8c9d0e1f2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("segment_membership_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_segment_history_segment_customer", ["segment_id", "customer_id"], unique=False
        )
        batch_op.drop_index("ix_segment_membership_history_segment_id")


def downgrade() -> None:
    with op.batch_alter_table("segment_membership_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_segment_membership_history_segment_id", ["segment_id"], unique=False
        )
        batch_op.drop_index("ix_segment_history_segment_customer")
