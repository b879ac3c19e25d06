"""What the customers domain asks of the database: the identity lookup is one search of the
primary key per identifier, even on a table whose statistics lag behind its size (a store
growing fast; autovacuum off or late); an address finds its customer through an index; an
identify writes only the columns it changes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Table, insert
from sqlalchemy.engine import Connection

from regulars import db
from regulars.customers import repository
from regulars.customers.models import Customer, Identity, IdentityKind
from regulars.db import Database, session_scope
from tests.customers.helpers import customer, ingest, owner_of
from tests.plans import plan_of

STORED = 5_000
AT = datetime(2026, 3, 1, tzinfo=UTC)


def _store_identities() -> None:
    with session_scope() as session:
        customers = [
            {"id": f"C{n:025d}", "traits": {}, "created_at": AT, "updated_at": AT}
            for n in range(STORED)
        ]
        session.execute(insert(Customer), customers)
        identities = [
            {"kind": kind, "value": f"{kind}-{n}", "customer_id": f"C{n:025d}", "created_at": AT}
            for n in range(STORED)
            for kind in (IdentityKind.USER_ID, IdentityKind.ANONYMOUS_ID)
        ]
        session.execute(insert(Identity), identities)


def test_each_identifier_is_one_search_of_the_whole_key(database: Database) -> None:
    _store_identities()  # never analyzed: the planner guesses
    keys = {(IdentityKind.USER_ID, f"user_id-{n}") for n in range(0, 400, 4)}
    keys |= {(IdentityKind.ANONYMOUS_ID, f"anonymous_id-{n}") for n in range(1, 400, 4)}
    found: dict[repository.IdentityKey, tuple[str, str | None]] = {}
    plan = plan_of(lambda session: found.update(repository.load_identities(session, keys)))
    assert len(found) == len(keys)  # the lookup itself still answers
    if database.is_sqlite:
        assert (
            plan.count("USING INDEX sqlite_autoindex_customer_identities_1 (kind=? AND value=?)")
            == 2
        )
    else:
        searches = [line for line in plan.splitlines() if "customer_identities_pkey" in line]
        assert len(searches) == 2 and all("Index Scan" in line for line in searches), plan
        conditions = [line for line in plan.splitlines() if "Index Cond" in line and "kind" in line]
        assert len(conditions) == 2 and all("value" in line for line in conditions), plan
        assert "Filter" not in plan, plan


def test_a_customer_is_found_by_email_or_phone_through_an_index(database: Database) -> None:
    with session_scope() as session:
        customers = [
            {"id": f"C{n:025d}", "email": f"p{n}@example.com", "phone": f"+4930{n:07d}"}
            | {"traits": {}, "created_at": AT, "updated_at": AT}
            for n in range(STORED)
        ]
        session.execute(insert(Customer), customers)
    plan = plan_of(lambda session: repository.list_by_email(session, "p7@example.com"))
    plan += "\n" + plan_of(lambda session: repository.get_id_by_phone(session, "+49300000007"))
    if database.is_sqlite:
        assert "SEARCH customers USING INDEX ix_customers_email_search (email=?)" in plan
        assert "SEARCH customers USING INDEX ix_customers_phone_search (phone=?)" in plan
    else:
        assert "ix_customers_email_search" in plan and "ix_customers_phone_search" in plan, plan
    assert "SCAN customers" not in plan and "Seq Scan" not in plan, plan


def test_an_identify_sets_only_the_fields_it_changes(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A column in an UPDATE's SET rewrites its index entries on SQLite, same value or not."""
    first: dict[str, Any] = {"type": "identify", "userId": "u1", "messageId": "m1"}
    first["traits"] = {"email": "Ada@Example.com", "firstName": "Ada", "plan": "basic"}
    first["timestamp"] = "2026-03-01T10:00:00Z"
    again = {**first, "messageId": "m2", "timestamp": "2026-03-01T11:00:00Z"}
    again["traits"] = {"email": "Ada@Example.com", "firstName": "Ada", "plan": "pro"}
    ingest([first])
    updates: list[str] = []
    write = db._execute_raw  # the bulk writes go straight to the driver, past SQLAlchemy's events

    def recording(
        connection: Connection, table: Table, rows: Any, sql: str, *a: Any, **k: Any
    ) -> Any:
        if table.name == "customers" and sql.lstrip().upper().startswith("UPDATE"):
            updates.append(sql.lower())
        return write(connection, table, rows, sql, *a, **k)

    monkeypatch.setattr(db, "_execute_raw", recording)
    ingest([again])
    assert len(updates) == 1
    assert "traits" in updates[0] and re.search(r"\bupdated_at\b", updates[0])
    assert "email" not in updates[0] and "first_name" not in updates[0]
    stored = customer(owner_of("u1", IdentityKind.USER_ID) or "")
    assert (stored.email, stored.traits["plan"]) == ("Ada@example.com", "pro")
