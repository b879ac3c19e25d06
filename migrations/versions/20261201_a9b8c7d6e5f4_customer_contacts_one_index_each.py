"""customer email and phone: one index each

Revision ID: a9b8c7d6e5f4
Revises: f1a2b3c4d5e6
Create Date: 2026-12-01 13:40:00.000000

The search indexes on (email, id) and (phone, id) also answer `email = ?` and `phone = ?`
(on PostgreSQL the pattern operator classes hold equality), so the plain indexes on email
and phone were a second entry written for every address an identify set, and read by nothing.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a9b8c7d6e5f4"
down_revision: str | None = "f1a2b3c4d5e6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("ix_customers_email")
        batch_op.drop_index("ix_customers_phone")


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index("ix_customers_phone", ["phone"], unique=False)
        batch_op.create_index("ix_customers_email", ["email"], unique=False)
