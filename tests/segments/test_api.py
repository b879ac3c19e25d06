"""The segments REST API on both databases: CRUD, compute, preview, explain, members (JSON
and CSV), a customer's memberships and history, and clear errors."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from regulars.app import create_app
from regulars.db import Database
from regulars.identity.models import ApiKeyScope
from regulars.kit import clock
from tests.customers.helpers import ingest, owner_of
from tests.identity.keys import headers

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
BUYERS = {"type": "event", "name": "Order Completed"}


@pytest.fixture
def client(database: Database) -> Iterator[TestClient]:
    with clock.frozen(T0):
        yield TestClient(create_app(with_worker=False))


@pytest.fixture
def read(database: Database) -> dict[str, str]:
    return headers(ApiKeyScope.READ)


@pytest.fixture
def write(database: Database) -> dict[str, str]:
    return headers(ApiKeyScope.WRITE)


def error_of(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def customer(user: str, *, city: str, orders: int) -> str:
    messages: list[dict[str, Any]] = [
        {
            "type": "identify",
            "userId": user,
            "traits": {"city": city, "email": f"{user}@example.com"},
            "messageId": f"i-{user}",
            "timestamp": T0.isoformat(),
        }
    ]
    messages += [
        {
            "type": "track",
            "userId": user,
            "event": "Order Completed",
            "properties": {"revenue": 20},
            "messageId": f"o-{user}-{n}",
            "timestamp": (T0 - timedelta(days=n)).isoformat(),
        }
        for n in range(orders)
    ]
    assert ingest(messages).rejected == []
    owner = owner_of(user)
    assert owner is not None
    return owner


def create(client: TestClient, write: dict[str, str], key: str, rule: dict[str, Any]) -> None:
    response = client.post(
        "/api/segments", json={"key": key, "name": key.title(), "rule": rule}, headers=write
    )
    assert response.status_code == 201, response.text
    computed = client.post(f"/api/segments/{key}/compute", headers=write)
    assert computed.status_code == 200, computed.text


def test_create_compute_list_and_read_members(
    client: TestClient, read: dict[str, str], write: dict[str, str]
) -> None:
    ada = customer("ada", city="Berlin", orders=2)
    customer("bob", city="Berlin", orders=0)
    create(client, write, "buyers", BUYERS)

    listed = client.get("/api/segments", headers=read).json()
    assert [(s["key"], s["members_count"]) for s in listed["items"]] == [("buyers", 1)]
    assert listed["next_cursor"] is None

    page = client.get("/api/segments/buyers/members", headers=read).json()
    assert [m["customer_id"] for m in page["items"]] == [ada]
    assert page["items"][0]["email"] == "ada@example.com"

    mine = client.get(f"/api/customers/{ada}/segments", headers=read).json()
    assert [m["key"] for m in mine["items"]] == ["buyers"]
    history = client.get(f"/api/customers/{ada}/segments/history", headers=read).json()
    assert [(h["key"], h["exited_at"]) for h in history["items"]] == [("buyers", None)]


def test_members_export_as_csv(
    client: TestClient, read: dict[str, str], write: dict[str, str]
) -> None:
    ada = customer("ada", city="Berlin", orders=1)
    bob = customer("bob", city="Paris", orders=3)
    create(client, write, "buyers", BUYERS)
    response = client.get("/api/segments/buyers/members.csv", headers=read)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert sorted(r["customer_id"] for r in rows) == sorted([ada, bob])
    assert {r["email"] for r in rows} == {"ada@example.com", "bob@example.com"}


def test_preview_counts_without_saving(
    client: TestClient, read: dict[str, str], write: dict[str, str]
) -> None:
    customer("ada", city="Berlin", orders=2)
    customer("bob", city="Berlin", orders=1)
    customer("cy", city="Paris", orders=5)
    rule = {
        "type": "and",
        "rules": [
            {"type": "profile", "field": "traits.city", "op": "equals", "value": "Berlin"},
            {"type": "event", "name": "Order Completed", "op": "gte", "value": 2},
        ],
    }
    response = client.post("/api/segments/preview", json={"rule": rule}, headers=read)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 1
    assert [c["external_id"] for c in body["sample"]] == ["ada"]
    assert client.get("/api/segments", headers=read).json()["items"] == []


def test_explain_a_saved_segment_and_an_unsaved_rule(
    client: TestClient, read: dict[str, str], write: dict[str, str]
) -> None:
    bob = customer("bob", city="Paris", orders=0)
    create(client, write, "buyers", BUYERS)
    saved = client.get(f"/api/segments/buyers/explain?customer_id={bob}", headers=read).json()
    assert (saved["holds"], saved["member"]) == (False, False)
    assert saved["nodes"][0]["measured"] == 0

    rule = {"type": "profile", "field": "traits.city", "op": "equals", "value": "Paris"}
    unsaved = client.post(
        "/api/segments/explain", json={"rule": rule, "customer_id": bob}, headers=read
    ).json()
    assert (unsaved["holds"], unsaved["member"], unsaved["segment"]) == (True, None, None)


def test_a_bad_rule_is_a_422_with_the_path(client: TestClient, write: dict[str, str]) -> None:
    rule = {"type": "or", "rules": [{"type": "event", "name": "x", "window": {"last": 3}}]}
    error = error_of(
        client.post("/api/segments", json={"key": "x", "name": "X", "rule": rule}, headers=write),
        422,
    )
    assert error["code"] == "invalid_rule"
    assert error["details"][0]["path"].startswith("rule.rules.0.window.last")


def test_unknown_fields_duplicate_keys_and_unknown_segments_are_clear(
    client: TestClient, read: dict[str, str], write: dict[str, str]
) -> None:
    body = {"key": "b", "name": "B", "rule": BUYERS, "colour": "red"}
    assert error_of(client.post("/api/segments", json=body, headers=write), 422)["code"] == (
        "validation_failed"
    )
    create(client, write, "b", BUYERS)
    again = {"key": "b", "name": "B", "rule": BUYERS}
    assert error_of(client.post("/api/segments", json=again, headers=write), 409)["code"] == (
        "conflict"
    )
    missing = error_of(client.get("/api/segments/nope", headers=read), 404)
    assert "nope" in missing["message"]
    bad_key = {"key": "Has Spaces", "name": "X", "rule": BUYERS}
    assert client.post("/api/segments", json=bad_key, headers=write).status_code == 422


def test_update_delete_and_scopes(
    client: TestClient, read: dict[str, str], write: dict[str, str]
) -> None:
    create(client, write, "b", BUYERS)
    assert client.post("/api/segments/b/compute", headers=read).status_code == 403
    patched = client.patch("/api/segments/b", json={"name": "Buyers"}, headers=write)
    assert patched.status_code == 200 and patched.json()["name"] == "Buyers"
    assert client.delete("/api/segments/b", headers=write).status_code == 204
    assert client.get("/api/segments/b", headers=read).status_code == 404


def test_members_paginate_with_a_cursor(
    client: TestClient, read: dict[str, str], write: dict[str, str]
) -> None:
    ids = {customer(f"u{n}", city="Rome", orders=1) for n in range(5)}
    create(client, write, "buyers", BUYERS)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/segments/buyers/members", params=params, headers=read).json()
        seen += [m["customer_id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
