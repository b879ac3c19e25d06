"""segment history indexed by customer only

Revision ID: f1a2b3c4d5e6
Revises: d6e2f3a4b5c7
Create Date: 2026-12-01 13:20:00.000000

Every stay that opens writes one entry in each index of the history, at a random place, so
each index is pages written by every live re-evaluation that changes a membership. Closing
a stay (segment_id = ? AND customer_id IN (...)) is served as well by the customer index: a
customer has a few stays, read and filtered. Deleting a segment now reads the whole history
to cascade, which is rare; an entry is written at every membership change.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "f1a2b3c4d5e6"
down_revision: str | None = "d6e2f3a4b5c7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("segment_membership_history", schema=None) as batch_op:
        batch_op.drop_index("ix_segment_history_segment_customer")


def downgrade() -> None:
    with op.batch_alter_table("segment_membership_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_segment_history_segment_customer", ["segment_id", "customer_id"], unique=False
        )
