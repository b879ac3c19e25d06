"""customer search indexes, events by time

Revision ID: b3f5a6c7d8e9
Revises: 7c1e0d4a9b21
Create Date: 2026-11-30 12:00:00.000000

Dashboard search reads name, email and phone prefixes as index ranges: on SQLite, expression
indexes on the lowercased names (its email and phone indexes already compare bytewise); on
PostgreSQL, the same in COLLATE "C" so a prefix range is right whatever the database's
collation. The overview counts events and orders per day through (timestamp, name).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b3f5a6c7d8e9"
down_revision: str | None = "7c1e0d4a9b21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _name(column: str, collate: str) -> sa.TextClause:
    return sa.text(f"lower(coalesce({column}, ''))" + collate)


def _search_indexes() -> list[tuple[str, list[sa.TextClause | str]]]:
    if op.get_bind().dialect.name == "postgresql":
        c = ' COLLATE "C"'
        return [
            ("ix_customers_first_last_c", [_name("first_name", c), _name("last_name", c), "id"]),
            ("ix_customers_last_first_c", [_name("last_name", c), _name("first_name", c), "id"]),
            ("ix_customers_email_c", [sa.text('email COLLATE "C"'), "id"]),
            ("ix_customers_phone_c", [sa.text('phone COLLATE "C"'), "id"]),
        ]
    return [
        ("ix_customers_first_last", [_name("first_name", ""), _name("last_name", ""), "id"]),
        ("ix_customers_last_first", [_name("last_name", ""), _name("first_name", ""), "id"]),
    ]


def upgrade() -> None:
    for name, columns in _search_indexes():
        op.create_index(name, "customers", columns, unique=False)
    op.create_index("ix_events_timestamp_name", "events", ["timestamp", "name"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_events_timestamp_name", table_name="events")
    for name, _ in _search_indexes():
        op.drop_index(name, table_name="customers")
