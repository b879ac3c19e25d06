"""The customers REST API on both databases: contract, filters, pagination, edits, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from regulars.app import create_app
from regulars.customers.models import IdentityKind
from regulars.db import Database
from regulars.identity.models import ApiKeyScope
from regulars.kit import clock
from regulars.kit.pagination import encode_cursor
from tests.customers.helpers import ingest, owner_of
from tests.identity.keys import headers

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

CUSTOMER_FIELDS = {
    "id",
    "external_id",
    "anonymous_ids",
    "email",
    "phone",
    "first_name",
    "last_name",
    "timezone",
    "locale",
    "traits",
    "facts",
    "consents",
    "created_at",
    "updated_at",
}
FACT_FIELDS = {
    "orders_count",
    "revenue_total",
    "average_order_value",
    "first_order_at",
    "last_order_at",
    "first_seen_at",
    "last_seen_at",
    "events_count",
    "refunds_count",
    "refunded_total",
    "event_counts",
}
EVENT_FIELDS = {
    "id",
    "type",
    "name",
    "properties",
    "context",
    "timestamp",
    "received_at",
    "sent_at",
    "message_id",
    "source",
}


@pytest.fixture
def client(database: Database) -> TestClient:
    return TestClient(create_app(with_worker=False))


@pytest.fixture
def read(database: Database) -> dict[str, str]:
    return headers(ApiKeyScope.READ)


@pytest.fixture
def write(database: Database) -> dict[str, str]:
    return headers(ApiKeyScope.WRITE)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def error_of(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    error: dict[str, Any] = body["error"]
    return error


def identify(user_id: str, traits: dict[str, Any], *, message_id: str | None = None) -> str:
    result = ingest(
        [
            {
                "type": "identify",
                "userId": user_id,
                "traits": traits,
                "messageId": message_id or f"identify-{user_id}-{sorted(traits)}",
                "timestamp": at(0),
            }
        ]
    )
    assert result.rejected == [], result.rejected
    owner = owner_of(user_id)
    assert owner is not None
    return owner


def order(user_id: str, revenue: float, minutes: float, message_id: str) -> None:
    result = ingest(
        [
            {
                "type": "track",
                "userId": user_id,
                "event": "Order Completed",
                "properties": {"revenue": revenue},
                "messageId": message_id,
                "timestamp": at(minutes),
            }
        ]
    )
    assert result.accepted == 1


# --- one customer ------------------------------------------------------------------------------


def test_a_customer_answers_the_whole_contract(client: TestClient, read: dict[str, str]) -> None:
    ingest([{"type": "page", "anonymousId": "anon-1", "messageId": "p1", "timestamp": at(-5)}])
    ingest(
        [
            {
                "type": "identify",
                "userId": "u1",
                "anonymousId": "anon-1",
                "messageId": "i1",
                "timestamp": at(0),
                "traits": {
                    "email": "ada@example.com",
                    "phone": "+1 415 555 2671",
                    "firstName": "Ada",
                    "lastName": "Lovelace",
                    "plan": "pro",
                    "consents": {"email": "subscribed", "sms:promotions": False},
                },
                "context": {"timezone": "Europe/London", "locale": "en-GB"},
            }
        ]
    )
    order("u1", 19.99, 10, "o1")
    order("u1", 10.00, 20, "o2")
    customer_id = owner_of("u1")
    assert customer_id is not None

    response = client.get(f"/api/customers/{customer_id}", headers=read)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == CUSTOMER_FIELDS
    assert body["id"] == customer_id
    assert body["external_id"] == "u1"
    assert body["anonymous_ids"] == ["anon-1"]
    assert (body["email"], body["phone"]) == ("ada@example.com", "+14155552671")
    assert (body["first_name"], body["last_name"]) == ("Ada", "Lovelace")
    assert (body["timezone"], body["locale"]) == ("Europe/London", "en-GB")
    assert body["traits"]["plan"] == "pro"
    facts = body["facts"]
    assert set(facts) == FACT_FIELDS
    assert facts["orders_count"] == 2
    assert facts["revenue_total"] == 29.99
    assert facts["average_order_value"] == 15.0  # 14.995 rounds half up
    assert facts["events_count"] == 4
    assert facts["event_counts"] == {"Order Completed": 2}
    assert (facts["refunds_count"], facts["refunded_total"]) == (0, 0)
    assert datetime.fromisoformat(facts["first_order_at"]) == T0 + timedelta(minutes=10)
    assert datetime.fromisoformat(facts["last_order_at"]) == T0 + timedelta(minutes=20)
    assert datetime.fromisoformat(facts["first_seen_at"]) == T0 - timedelta(minutes=5)
    assert datetime.fromisoformat(facts["last_seen_at"]) == T0 + timedelta(minutes=20)
    consents = [(c["channel"], c["topic"], c["status"]) for c in body["consents"]]
    assert consents == [("email", "", "subscribed"), ("sms", "promotions", "unsubscribed")]
    assert body["created_at"].endswith("Z") and body["updated_at"].endswith("Z")


def test_a_customer_without_orders_has_no_average(client: TestClient, read: dict[str, str]) -> None:
    customer_id = identify("u", {"plan": "free"})
    facts = client.get(f"/api/customers/{customer_id}", headers=read).json()["facts"]
    assert facts["orders_count"] == 0
    assert facts["average_order_value"] is None
    assert facts["revenue_total"] == 0


def test_unknown_customer_is_404(client: TestClient, read: dict[str, str]) -> None:
    for path in ("", "/events", "/consents"):
        error = error_of(client.get(f"/api/customers/nope{path}", headers=read), 404)
        assert error["code"] == "not_found"
        assert "nope" in error["message"]


def test_a_merged_away_id_answers_the_survivor(client: TestClient, read: dict[str, str]) -> None:
    ingest([{"type": "track", "anonymousId": "a", "event": "Viewed", "messageId": "1"}])
    survivor = identify("u", {"plan": "pro"})
    merged = owner_of("a", IdentityKind.ANONYMOUS_ID)
    assert merged is not None and merged != survivor
    ingest([{"type": "identify", "userId": "u", "anonymousId": "a", "messageId": "2"}])

    response = client.get(f"/api/customers/{merged}", headers=read)
    assert response.status_code == 200
    assert response.json()["id"] == survivor
    assert response.json()["anonymous_ids"] == ["a"]
    events = client.get(f"/api/customers/{merged}/events", headers=read).json()["items"]
    assert {e["message_id"] for e in events} == {"1", "2", "identify-u-['plan']"}


# --- listing and filters -----------------------------------------------------------------------


def _ids(response: Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["items"]}


def test_list_filters_by_email_phone_and_external_id(
    client: TestClient, read: dict[str, str]
) -> None:
    ada = identify("ada", {"email": "ada@example.com", "phone": "(415) 555-2671"})
    bob = identify("bob", {"email": "bob@example.com", "phone": "+44 20 7946 0958"})
    url = "/api/customers"
    assert _ids(client.get(url, headers=read)) == {ada, bob}
    assert _ids(client.get(url, params={"email": "ada@EXAMPLE.com"}, headers=read)) == {ada}
    assert _ids(client.get(url, params={"phone": "415-555-2671"}, headers=read)) == {ada}
    assert _ids(client.get(url, params={"phone": "+442079460958"}, headers=read)) == {bob}
    assert _ids(client.get(url, params={"external_id": "bob"}, headers=read)) == {bob}
    assert _ids(client.get(url, params={"external_id": "carol"}, headers=read)) == set()
    both = {"email": "ada@example.com", "external_id": "bob"}
    assert _ids(client.get(url, params=both, headers=read)) == set()


def test_list_filters_by_traits_nested_numbers_and_booleans(
    client: TestClient, read: dict[str, str]
) -> None:
    berlin = identify(
        "a", {"plan": "pro", "address": {"city": "Berlin"}, "age": 42, "vip": True, "x": "a:b"}
    )
    paris = identify("b", {"plan": "pro", "address": {"city": "Paris"}, "age": "42", "vip": False})
    free = identify("c", {"plan": "free", "score": 4.5})

    def find(*traits: str) -> set[str]:
        return _ids(client.get("/api/customers", params={"trait": list(traits)}, headers=read))

    assert find("plan:pro") == {berlin, paris}
    assert find("plan:free") == {free}
    assert find("address.city:Berlin") == {berlin}
    assert find("plan:pro", "address.city:Paris") == {paris}
    assert find("plan:free", "address.city:Paris") == set()
    assert find("age:42") == {berlin, paris}
    assert find("vip:true") == {berlin}
    assert find("vip:false") == {paris}
    assert find("score:4.5") == {free}
    assert find("x:a:b") == {berlin}
    assert find("address.country:DE") == set()
    assert find("plan:") == set()


def test_list_filters_by_creation_and_last_seen_times(
    client: TestClient, read: dict[str, str]
) -> None:
    with clock.frozen(T0) as frozen:
        early = identify("early", {})
        frozen.advance(timedelta(days=2))
        late = identify("late", {})
    order("early", 5, 60 * 24 * 10, "late-order")  # early was seen last, 10 days after T0
    url = "/api/customers"
    day1 = (T0 + timedelta(days=1)).isoformat()
    assert _ids(client.get(url, params={"created_after": day1}, headers=read)) == {late}
    assert _ids(client.get(url, params={"created_before": day1}, headers=read)) == {early}
    naive = (T0 + timedelta(days=1)).replace(tzinfo=None).isoformat()
    assert _ids(client.get(url, params={"created_before": naive}, headers=read)) == {early}
    day5 = (T0 + timedelta(days=5)).isoformat()
    assert _ids(client.get(url, params={"last_seen_after": day5}, headers=read)) == {early}
    assert _ids(client.get(url, params={"last_seen_before": day5}, headers=read)) == {late}


def test_pagination_walks_every_customer_once(client: TestClient, read: dict[str, str]) -> None:
    made = {identify(f"user-{n:02d}", {"plan": "pro" if n % 3 else "free"}) for n in range(23)}
    for params, expected in (({}, made), ({"trait": "plan:pro"}, None)):
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            query: dict[str, Any] = {"limit": 5, **params}
            if cursor is not None:
                query["cursor"] = cursor
            body = client.get("/api/customers", params=query, headers=read).json()
            pages += 1
            assert len(body["items"]) <= 5
            seen += [item["id"] for item in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen))
        if expected is not None:
            assert set(seen) == expected and pages == 5
        else:
            assert len(seen) == 15  # n % 3 != 0 for 15 of 0..22
        assert seen == sorted(seen, reverse=True)  # newest first


def test_a_full_last_page_has_no_next_cursor(client: TestClient, read: dict[str, str]) -> None:
    for n in range(4):
        identify(f"u{n}", {})
    first = client.get("/api/customers", params={"limit": 2}, headers=read).json()
    second = client.get(
        "/api/customers", params={"limit": 2, "cursor": first["next_cursor"]}, headers=read
    ).json()
    assert len(second["items"]) == 2 and second["next_cursor"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not a cursor"},
        {"cursor": "e30"},  # {}: valid base64 JSON of the wrong shape
        {"cursor": encode_cursor(1, 2)},
        {"cursor": encode_cursor(42)},
        {"limit": 0},
        {"limit": 201},
        {"limit": "many"},
        {"trait": "plan"},
        {"trait": ":pro"},
        {"trait": "a..b:1"},
        {"phone": "12"},
        {"email": "not-an-email"},
        {"created_after": "yesterday"},
    ],
)
def test_bad_list_parameters_are_422(
    client: TestClient, read: dict[str, str], params: dict[str, Any]
) -> None:
    error = error_of(client.get("/api/customers", params=params, headers=read), 422)
    assert error["message"]


def test_limit_200_is_allowed(client: TestClient, read: dict[str, str]) -> None:
    identify("u", {})
    assert len(client.get("/api/customers?limit=200", headers=read).json()["items"]) == 1


# --- PATCH -------------------------------------------------------------------------------------


def test_patch_changes_fields_and_merges_traits(
    client: TestClient, read: dict[str, str], write: dict[str, str]
) -> None:
    customer_id = identify("u", {"email": "old@example.com", "plan": "free", "city": "Oslo"})
    changes = {
        "email": "New@Example.com",
        "phone": "(415) 555-2671",
        "first_name": "Grace",
        "locale": "de_DE",
        "timezone": "America/New_York",
        "traits": {"plan": "pro", "seats": 3},
    }
    response = client.patch(f"/api/customers/{customer_id}", json=changes, headers=write)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["email"] == "New@example.com"
    assert body["phone"] == "+14155552671"
    assert body["first_name"] == "Grace"
    assert body["locale"] == "de-DE"
    assert body["timezone"] == "America/New_York"
    assert body["traits"] == {"email": "old@example.com", "plan": "pro", "city": "Oslo", "seats": 3}
    assert client.get(f"/api/customers/{customer_id}", headers=read).json() == body

    cleared = client.patch(f"/api/customers/{customer_id}", json={"phone": None}, headers=write)
    assert cleared.json()["phone"] is None
    assert cleared.json()["email"] == "New@example.com"


def test_patch_through_a_merged_id_changes_the_survivor(
    client: TestClient, write: dict[str, str]
) -> None:
    ingest([{"type": "page", "anonymousId": "a", "messageId": "1"}])
    merged = owner_of("a", IdentityKind.ANONYMOUS_ID)
    survivor = identify("u", {})
    ingest([{"type": "alias", "userId": "u", "previousId": "a", "messageId": "2"}])
    response = client.patch(f"/api/customers/{merged}", json={"first_name": "X"}, headers=write)
    assert response.status_code == 200
    assert response.json()["id"] == survivor and response.json()["first_name"] == "X"


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "CEST"}, "timezone"),
        ({"phone": "555"}, "phone"),
        ({"email": "nobody"}, "email"),
        ({"locale": "not a locale"}, "locale"),
        ({"first_name": ""}, "first_name"),
        ({"first_name": "x" * 256}, "first_name"),
        ({"nickname": "Ada"}, "nickname"),
        ({"external_id": "other"}, "external_id"),
        ({"traits": ["not", "an", "object"]}, "traits"),
    ],
)
def test_patch_rejects_bad_and_unknown_fields_with_422(
    client: TestClient, write: dict[str, str], changes: dict[str, Any], where: str
) -> None:
    customer_id = identify("u", {"email": "kept@example.com"})
    response = client.patch(f"/api/customers/{customer_id}", json=changes, headers=write)
    error = error_of(response, 422)
    assert error["code"] == "validation_failed"
    assert any(where in detail["loc"] for detail in error["details"])
    body = client.get(f"/api/customers/{customer_id}", headers=write).json()
    assert body["email"] == "kept@example.com"
    assert body["timezone"] is None and body["phone"] is None


def test_patch_unknown_customer_is_404(client: TestClient, write: dict[str, str]) -> None:
    response = client.patch("/api/customers/nope", json={"first_name": "X"}, headers=write)
    assert error_of(response, 404)["code"] == "not_found"


# --- events ------------------------------------------------------------------------------------


def _track(user_id: str, name: str, minutes: float, message_id: str) -> None:
    event = {"type": "track", "userId": user_id, "event": name, "messageId": message_id}
    result = ingest([{**event, "timestamp": at(minutes), "properties": {"n": message_id}}])
    assert result.accepted == 1


def test_events_come_newest_first_in_pages_without_duplicates(
    client: TestClient, read: dict[str, str]
) -> None:
    customer_id = identify("u", {})
    for n in range(12):
        _track("u", "Viewed", minutes=n // 3, message_id=f"e{n:02d}")  # three events per instant
    url = f"/api/customers/{customer_id}/events"
    first = client.get(url, params={"limit": 100}, headers=read).json()
    everything = first["items"]
    assert first["next_cursor"] is None
    assert len(everything) == 13
    assert set(everything[0]) == EVENT_FIELDS
    keys = [(e["timestamp"], e["id"]) for e in everything]
    assert keys == sorted(keys, reverse=True)

    walked: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        page = client.get(url, params=params, headers=read).json()
        walked += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["id"] for e in walked] == [e["id"] for e in everything]


def test_events_filter_by_type_and_name(client: TestClient, read: dict[str, str]) -> None:
    customer_id = identify("u", {})
    _track("u", "Viewed", 1, "v1")
    _track("u", "Order Completed", 2, "o1")
    ingest([{"type": "page", "userId": "u", "name": "Home", "messageId": "p1"}])
    url = f"/api/customers/{customer_id}/events"

    def message_ids(**params: str) -> list[str]:
        response = client.get(url, params=params, headers=read)
        assert response.status_code == 200, response.text
        return [e["message_id"] for e in response.json()["items"]]

    assert message_ids(type="track") == ["o1", "v1"]
    assert message_ids(type="page") == ["p1"]
    assert message_ids(name="Order Completed") == ["o1"]
    assert message_ids(type="page", name="Viewed") == []
    event = client.get(url, params={"name": "Viewed"}, headers=read).json()["items"][0]
    assert event["type"] == "track" and event["properties"] == {"n": "v1"}
    assert event["source"] == "test" and event["sent_at"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "%%%"},
        {"cursor": encode_cursor("x")},
        {"cursor": encode_cursor("not a time", 1)},
        {"cursor": encode_cursor("2026-03-01T12:00:00", 1)},
        {"cursor": encode_cursor("2026-03-01T12:00:00+00:00", "1")},
        {"type": "purchase"},
        {"limit": 0},
        {"limit": 201},
    ],
)
def test_bad_event_parameters_are_422(
    client: TestClient, read: dict[str, str], params: dict[str, Any]
) -> None:
    customer_id = identify("u", {})
    response = client.get(f"/api/customers/{customer_id}/events", params=params, headers=read)
    error_of(response, 422)


# --- consents ----------------------------------------------------------------------------------


def test_put_consents_changes_them_and_get_lists_them(
    client: TestClient, read: dict[str, str], write: dict[str, str]
) -> None:
    customer_id = identify("u", {"consents": {"email": "subscribed"}})
    url = f"/api/customers/{customer_id}/consents"
    changes = [
        {"channel": "email", "status": "unsubscribed"},
        {"channel": "sms", "topic": "promotions", "status": "subscribed"},
    ]
    response = client.put(url, json=changes, headers=write)
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    got = client.get(url, headers=read).json()
    assert got == response.json()
    rows = [(c["channel"], c["topic"], c["status"], c["source"]) for c in got["items"]]
    assert rows == [
        ("email", "", "unsubscribed", "api"),
        ("sms", "promotions", "subscribed", "api"),
    ]
    profile = client.get(f"/api/customers/{customer_id}", headers=read).json()
    assert profile["consents"] == got["items"]


@pytest.mark.parametrize(
    "body",
    [
        [{"channel": "pigeon", "status": "subscribed"}],
        [{"channel": "email", "status": "maybe"}],
        [{"channel": "email"}],
        [{"channel": "email", "status": "subscribed", "why": "asked"}],
        [{"channel": "email", "topic": "t" * 101, "status": "subscribed"}],
        {"channel": "email", "status": "subscribed"},
    ],
)
def test_bad_consent_changes_are_422_and_change_nothing(
    client: TestClient, write: dict[str, str], body: Any
) -> None:
    customer_id = identify("u", {})
    url = f"/api/customers/{customer_id}/consents"
    error_of(client.put(url, json=body, headers=write), 422)
    assert client.get(url, headers=write).json() == {"items": [], "next_cursor": None}


def test_put_consents_of_unknown_customer_is_404(client: TestClient, write: dict[str, str]) -> None:
    body = [{"channel": "email", "status": "subscribed"}]
    response = client.put("/api/customers/nope/consents", json=body, headers=write)
    assert error_of(response, 404)["code"] == "not_found"
