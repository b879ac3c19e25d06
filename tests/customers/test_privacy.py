"""GDPR access (export) and erasure on both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from regulars.app import create_app
from regulars.customers.models import Erasure, IdentityKind
from regulars.db import Database, session_scope
from regulars.identity.models import ApiKeyScope
from regulars.models import Base
from tests.customers.helpers import ingest, owner_of
from tests.identity.keys import headers

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PERSONAL = ("ada@example.com", "Ada", "+14155552671", "anon-ada", "ada-1", "secret-note")


@pytest.fixture
def client(database: Database) -> TestClient:
    return TestClient(create_app(with_worker=False))


@pytest.fixture
def admin(database: Database) -> dict[str, str]:
    return headers(ApiKeyScope.ADMIN)


def _ada_with_everything() -> tuple[str, str]:
    """A customer with events, facts, counts, consents and history, a group and a merge; and
    the id of the profile that was merged into her."""
    ingest([{"type": "page", "anonymousId": "anon-ada", "messageId": "a1", "name": "Home"}])
    merged = owner_of("anon-ada", IdentityKind.ANONYMOUS_ID)
    ingest(
        [
            {
                "type": "identify",
                "userId": "ada-1",
                "messageId": "a2",
                "traits": {
                    "email": "ada@example.com",
                    "firstName": "Ada",
                    "phone": "+14155552671",
                    "note": "secret-note",
                    "consents": {"email": "subscribed"},
                },
            },
            {
                "type": "track",
                "userId": "ada-1",
                "event": "Order Completed",
                "properties": {"revenue": 12.5},
                "messageId": "a3",
            },
            {"type": "group", "userId": "ada-1", "groupId": "acme", "messageId": "a4"},
            {"type": "identify", "userId": "ada-1", "anonymousId": "anon-ada", "messageId": "a5"},
            {
                "type": "identify",
                "userId": "ada-1",
                "messageId": "a6",
                "traits": {"consents": {"email": "unsubscribed"}},
            },
        ]
    )
    survivor = owner_of("ada-1")
    assert survivor is not None and merged is not None and survivor != merged
    return survivor, merged


def _bob() -> str:
    ingest(
        [
            {
                "type": "identify",
                "userId": "bob",
                "anonymousId": "anon-bob",
                "messageId": "b1",
                "traits": {"email": "bob@example.com", "consents": {"sms": True}},
            },
            {"type": "track", "userId": "bob", "event": "Order Completed", "messageId": "b2"},
            {"type": "group", "userId": "bob", "groupId": "acme", "messageId": "b3"},
        ]
    )
    bob = owner_of("bob")
    assert bob is not None
    return bob


def _rows_per_table() -> dict[str, list[dict[str, Any]]]:
    with session_scope(readonly=True) as session:
        return {
            table.name: [dict(row._mapping) for row in session.execute(select(table))]
            for table in Base.metadata.sorted_tables
        }


def test_export_holds_every_row_about_the_customer(
    client: TestClient, admin: dict[str, str]
) -> None:
    ada, merged = _ada_with_everything()
    _bob()
    response = client.get(f"/api/customers/{merged}/export", headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "exported_at",
        "customer",
        "identities",
        "event_counts",
        "events",
        "consent_history",
        "group_memberships",
        "merges",
        "held_elsewhere",
    }
    assert body["customer"]["id"] == ada
    assert body["customer"]["email"] == "ada@example.com"
    assert body["customer"]["facts"]["revenue_total"] == 12.5
    assert sorted((i["kind"], i["value"]) for i in body["identities"]) == [
        ("anonymous_id", "anon-ada"),
        ("user_id", "ada-1"),
    ]
    assert sorted(e["message_id"] for e in body["events"]) == ["a1", "a2", "a3", "a4", "a5", "a6"]
    assert [(c["event_name"], c["count"]) for c in body["event_counts"]] == [("Order Completed", 1)]
    history = [(c["channel"], c["status"]) for c in body["consent_history"]]
    assert history == [("email", "subscribed"), ("email", "unsubscribed")]
    assert [c["status"] for c in body["customer"]["consents"]] == ["unsubscribed"]
    assert [g["group_key"] for g in body["group_memberships"]] == ["acme"]
    assert [(m["merged_id"], m["reason"]) for m in body["merges"]] == [(merged, "identify")]
    assert "bob" not in response.text


def test_export_and_erase_need_admin_and_a_known_customer(client: TestClient) -> None:
    ada, _merged = _ada_with_everything()
    write = headers(ApiKeyScope.WRITE)
    admin = headers(ApiKeyScope.ADMIN)
    assert client.get(f"/api/customers/{ada}/export", headers=write).status_code == 403
    assert client.delete(f"/api/customers/{ada}", headers=write).status_code == 403
    assert client.get("/api/customers/nope/export", headers=admin).status_code == 404
    assert client.delete("/api/customers/nope", headers=admin).status_code == 404
    with session_scope(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Erasure)) == 0


def test_erase_removes_every_row_and_keeps_one_audit_row(
    client: TestClient, admin: dict[str, str]
) -> None:
    ada, merged = _ada_with_everything()
    bob = _bob()
    before = _rows_per_table()

    response = client.delete(f"/api/customers/{ada}", headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["customer_id"] == ada
    assert body["rows_deleted"] == {
        "events": 6,
        "customer_event_counts": 1,
        "customer_facts": 1,
        "consents": 1,
        "consent_changes": 2,
        "group_memberships": 1,
        "customer_identities": 2,
        "customer_merges": 1,
        "customers": 1,
    }

    after = _rows_per_table()
    for table, rows in after.items():
        text = repr(rows)
        if table != "erasures":
            assert ada not in text and merged not in text, table
        for value in PERSONAL:
            assert value not in text, (table, value)
    (audit,) = after["erasures"]
    assert audit["customer_id"] == ada and audit["rows_deleted"] == body["rows_deleted"]
    assert audit["requested_by"].startswith("api_key:")
    for table, rows in after.items():
        if table in ("erasures", "api_keys"):
            continue
        kept = [
            row for row in before[table] if ada not in row.values() and merged not in row.values()
        ]
        assert rows == kept, table
    assert after["customers"] == [row for row in before["customers"] if row["id"] == bob]
    assert len(after["events"]) == 3 and len(after["groups"]) == 1

    for path in (ada, merged):
        assert client.get(f"/api/customers/{path}", headers=admin).status_code == 404
    assert client.delete(f"/api/customers/{ada}", headers=admin).status_code == 404


def test_erase_through_a_merged_id_erases_the_survivor(
    client: TestClient, admin: dict[str, str]
) -> None:
    ada, merged = _ada_with_everything()
    response = client.delete(f"/api/customers/{merged}", headers=admin)
    assert response.status_code == 200
    assert response.json()["customer_id"] == ada
    after = _rows_per_table()
    holding_rows = {table for table, rows in after.items() if rows}
    assert holding_rows == {"erasures", "api_keys", "groups"}
    assert owner_of("ada-1") is None
