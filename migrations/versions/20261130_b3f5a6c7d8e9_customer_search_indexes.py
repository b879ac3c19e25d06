"""customer search indexes, events by time

Revision ID: b3f5a6c7d8e9
Revises: 7c1e0d4a9b21
Create Date: 2026-11-30 12:00:00.000000

Dashboard search reads name, email and phone prefixes as index ranges in bytewise order: on
PostgreSQL with the pattern operator classes (right whatever the database's collation), on
SQLite on `name COLLATE NOCASE` (SQLite cannot reflect expression indexes). The overview
counts events and orders per day through (timestamp, name).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b3f5a6c7d8e9"
down_revision: str | None = "7c1e0d4a9b21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAMES = {
    "first_name": "ix_customers_first_name_search",
    "last_name": "ix_customers_last_name_search",
}
CONTACTS = {"email": "ix_customers_email_search", "phone": "ix_customers_phone_search"}


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for column, name in NAMES.items():
        key = f"lower({column}) text_pattern_ops" if postgres else f"{column} COLLATE NOCASE"
        op.create_index(name, "customers", [sa.text(key), "id"], unique=False)
    for column, name in CONTACTS.items():
        if postgres:
            ops = {column: "varchar_pattern_ops"}
            op.create_index(name, "customers", [column, "id"], postgresql_ops=ops)
        else:
            op.create_index(name, "customers", [column, "id"])
    op.create_index("ix_events_timestamp_name", "events", ["timestamp", "name"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_events_timestamp_name", table_name="events")
    for name in (*NAMES.values(), *CONTACTS.values()):
        op.drop_index(name, table_name="customers")
