"""The Segment HTTP Tracking API against a real database: endpoints, auth, bodies, limits."""

from __future__ import annotations

import gzip
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from regulars.customers import service as customers_service
from regulars.customers.models import Customer, Event, EventType
from regulars.customers.schemas import IngestResult
from regulars.db import session_scope
from regulars.identity.models import Source
from regulars.identity.service import get_source_by_write_key
from regulars.ingestion import api
from regulars.kit import clock
from tests.ingestion.helpers import basic, post
from tests.ingestion.readback import all_events, count, profile_of

SINGLE_CALLS: dict[str, dict[str, object]] = {
    "identify": {"userId": "u1", "traits": {"email": "ada@example.com", "plan": "pro"}},
    "track": {"userId": "u1", "event": "Product Viewed", "properties": {"sku": "A-1"}},
    "page": {"userId": "u1", "name": "Home", "properties": {"path": "/"}},
    "screen": {"userId": "u1", "name": "Basket"},
    "group": {"userId": "u1", "groupId": "acme", "traits": {"name": "Acme"}},
    "alias": {"userId": "u1", "previousId": "anon-1"},
}
SHORT = {"i": "identify", "t": "track", "p": "page", "s": "screen", "g": "group", "a": "alias"}


def track(user_id: str, message_id: str, event: str = "Product Viewed") -> dict[str, object]:
    return {"type": "track", "userId": user_id, "event": event, "messageId": message_id}


@pytest.mark.parametrize("kind", sorted(SINGLE_CALLS))
def test_each_single_endpoint_stores_one_event_of_its_type(
    client: TestClient, write_key: str, kind: str
) -> None:
    response = post(client, f"/v1/{kind}", SINGLE_CALLS[kind], write_key=write_key)

    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    events = profile_of("u1").events
    assert [event.type for event in events] == [EventType(kind)]


@pytest.mark.parametrize(("short", "kind"), sorted(SHORT.items()))
def test_short_paths_are_the_same_endpoints(
    client: TestClient, write_key: str, short: str, kind: str
) -> None:
    response = post(client, f"/v1/{short}", SINGLE_CALLS[kind], write_key=write_key)

    assert response.status_code == 200, response.text
    assert [event.type for event in profile_of("u1").events] == [EventType(kind)]


def test_single_endpoint_takes_its_type_from_the_path(client: TestClient, write_key: str) -> None:
    body = {**SINGLE_CALLS["page"], "type": "track"}

    assert post(client, "/v1/page", body, write_key=write_key).status_code == 200
    assert [event.type for event in profile_of("u1").events] == [EventType.PAGE]


def test_identify_sets_profile_traits(client: TestClient, write_key: str) -> None:
    post(client, "/v1/identify", SINGLE_CALLS["identify"], write_key=write_key)

    customer = profile_of("u1").customer
    assert customer.email == "ada@example.com"
    assert customer.traits["plan"] == "pro"


def test_batch_stores_every_message(client: TestClient, write_key: str) -> None:
    batch = [track("u1", "m1"), track("u1", "m2", "Order Completed"), track("u2", "m3")]

    response = post(client, "/v1/batch", {"batch": batch}, write_key=write_key)

    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    assert sorted(event.message_id for event in all_events()) == ["m1", "m2", "m3"]
    assert [event.name for event in profile_of("u1").events] == [
        "Product Viewed",
        "Order Completed",
    ]


def test_write_key_in_the_body_is_accepted(client: TestClient, write_key: str) -> None:
    body = {"batch": [track("u1", "m1")], "writeKey": write_key}

    response = post(client, "/v1/batch", body, write_key=None)

    assert response.status_code == 200, response.text
    assert [event.message_id for event in all_events()] == ["m1"]


def test_events_are_stored_under_the_source_of_the_write_key(
    client: TestClient, write_key: str
) -> None:
    post(client, "/v1/batch", {"batch": [track("u1", "m1")]}, write_key=write_key)

    with session_scope(readonly=True) as session:
        source = get_source_by_write_key(session, write_key)
        assert source is not None
        source_id = source.id
    assert [event.source for event in all_events()] == [source_id]


def test_missing_write_key_is_401(client: TestClient, write_key: str) -> None:
    response = post(client, "/v1/batch", {"batch": [track("u1", "m1")]}, write_key=None)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert count(Event) == 0


@pytest.mark.parametrize("key", ["wk_unknown", "x" * 300, "wk\x00nul"])
def test_unknown_write_key_is_401(client: TestClient, write_key: str, key: str) -> None:
    response = post(client, "/v1/track", SINGLE_CALLS["track"], write_key=key)

    assert response.status_code == 401
    assert set(response.json()["error"]) == {"code", "message", "details"}


def test_disabled_source_is_401(client: TestClient, write_key: str) -> None:
    with session_scope() as session:
        session.execute(
            update(Source).where(Source.write_key == write_key).values(disabled_at=clock.now())
        )

    response = post(client, "/v1/track", SINGLE_CALLS["track"], write_key=write_key)

    assert response.status_code == 401
    assert count(Event) == 0


def test_authorization_that_is_not_basic_base64_is_401(client: TestClient, write_key: str) -> None:
    body = orjson.dumps(SINGLE_CALLS["track"])

    response = client.post("/v1/track", content=body, headers={"Authorization": "Basic not*b64"})

    assert response.status_code == 401


def test_gzip_body_is_accepted(client: TestClient, write_key: str) -> None:
    body = {"batch": [track("u1", "m1"), track("u1", "m2")]}

    response = post(client, "/v1/batch", body, write_key=write_key, gzipped=True)

    assert response.status_code == 200, response.text
    assert count(Event) == 2


def test_gzip_bomb_is_413_without_inflating_it(client: TestClient, write_key: str) -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * (50 * 1024 * 1024) + b"]}")
    assert len(bomb) < 100 * 1024

    response = client.post(
        "/v1/batch", content=bomb, headers={**basic(write_key), "Content-Encoding": "gzip"}
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_body_that_is_not_gzip_is_400(client: TestClient, write_key: str) -> None:
    headers = {**basic(write_key), "Content-Encoding": "gzip"}

    response = client.post("/v1/batch", content=b'{"batch": []}', headers=headers)

    assert response.status_code == 400
    assert "gzip" in response.json()["error"]["message"]


def test_truncated_gzip_is_400(client: TestClient, write_key: str) -> None:
    data = gzip.compress(orjson.dumps({"batch": [track("u1", "m1")]}))[:-12]

    response = client.post(
        "/v1/batch", content=data, headers={**basic(write_key), "Content-Encoding": "gzip"}
    )

    assert response.status_code == 400
    assert count(Event) == 0


def test_unknown_content_encoding_is_415(client: TestClient, write_key: str) -> None:
    headers = {**basic(write_key), "Content-Encoding": "br"}

    response = client.post("/v1/batch", content=b'{"batch": []}', headers=headers)

    assert response.status_code == 415


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/track"])
def test_malformed_json_is_400_saying_so(client: TestClient, write_key: str, path: str) -> None:
    response = post(client, path, b'{"batch": [', write_key=write_key)

    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("body is not valid JSON")


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"12", b"null", b""])
def test_body_that_is_not_an_object_is_400(client: TestClient, write_key: str, body: bytes) -> None:
    response = post(client, "/v1/batch", body, write_key=write_key)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_body"


@pytest.mark.parametrize("batch", [None, {"0": {}}, "[]", 3])
def test_batch_that_is_not_a_list_is_400(client: TestClient, write_key: str, batch: object) -> None:
    response = post(client, "/v1/batch", {"batch": batch}, write_key=write_key)

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "batch must be a list of messages"


def test_batch_over_500_kb_is_413(client: TestClient, write_key: str) -> None:
    padding = "x" * 20_000
    batch = [{**track("u1", f"m{i}"), "properties": {"pad": padding}} for i in range(30)]
    assert len(orjson.dumps({"batch": batch})) > 500 * 1024

    response = post(client, "/v1/batch", {"batch": batch}, write_key=write_key)

    assert response.status_code == 413
    assert count(Event) == 0


def test_batch_over_500_kb_is_413_when_gzipped_small(client: TestClient, write_key: str) -> None:
    batch = [{**track("u1", f"m{i}"), "properties": {"pad": "x" * 20_000}} for i in range(30)]

    response = post(client, "/v1/batch", {"batch": batch}, write_key=write_key, gzipped=True)

    assert response.status_code == 413


def test_single_message_over_32_kb_is_413(client: TestClient, write_key: str) -> None:
    body = {**SINGLE_CALLS["track"], "properties": {"pad": "x" * 33_000}}

    response = post(client, "/v1/track", body, write_key=write_key)

    assert response.status_code == 413
    assert count(Event) == 0


def test_batch_event_over_32_kb_is_rejected_alone(client: TestClient, write_key: str) -> None:
    big = {**track("u1", "big"), "properties": {"pad": "x" * 33_000}}
    batch = [track("u1", "m0"), big, track("u1", "m2")]

    response = post(client, "/v1/batch", {"batch": batch}, write_key=write_key)

    assert response.status_code == 200
    assert [r["index"] for r in response.json()["rejected"]] == [1]
    assert sorted(event.message_id for event in all_events()) == ["m0", "m2"]


def test_partial_batch_stores_valid_items_and_lists_the_rejected(
    client: TestClient, write_key: str
) -> None:
    batch: list[object] = [
        track("u1", "m0"),
        {"type": "track", "userId": "u1", "messageId": "m1"},  # no event name
        "not a message",
        track("u2", "m3"),
        {"type": "teleport", "userId": "u1", "messageId": "m4"},
    ]

    response = post(client, "/v1/batch", {"batch": batch}, write_key=write_key)

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [1, 2, 4]
    assert all(r["code"] and r["reason"] for r in body["rejected"])
    assert body["rejected"][1]["reason"] == "a message must be a JSON object, not str"
    assert sorted(event.message_id for event in all_events()) == ["m0", "m3"]


def test_single_call_that_is_rejected_is_400_with_the_reason(
    client: TestClient, write_key: str
) -> None:
    response = post(client, "/v1/track", {"userId": "u1"}, write_key=write_key)

    assert response.status_code == 400
    assert "event" in response.json()["error"]["message"]
    assert count(Event) == 0


def test_same_batch_sent_twice_is_stored_once(client: TestClient, write_key: str) -> None:
    body = {"batch": [track("u1", "m1"), track("u1", "m2", "Order Completed")]}

    first = post(client, "/v1/batch", body, write_key=write_key)
    second = post(client, "/v1/batch", body, write_key=write_key)

    assert (first.status_code, second.status_code) == (200, 200)
    assert count(Event) == 2
    assert profile_of("u1").facts.events_count == 2


def test_batch_context_and_sent_at_fill_messages_that_lack_them(
    client: TestClient, write_key: str
) -> None:
    own = {**track("u1", "m1"), "context": {"ip": "10.0.0.1"}}
    body = {
        "batch": [own, track("u1", "m2")],
        "context": {"library": {"name": "test"}, "ip": "10.9.9.9"},
        "sentAt": "2026-01-02T03:04:05Z",
    }

    assert post(client, "/v1/batch", body, write_key=write_key).status_code == 200

    events = {event.message_id: event for event in all_events()}
    assert events["m1"].context == {"library": {"name": "test"}, "ip": "10.0.0.1"}
    assert events["m2"].context == {"library": {"name": "test"}, "ip": "10.9.9.9"}
    assert events["m2"].sent_at is not None
    assert events["m2"].sent_at.isoformat() == "2026-01-02T03:04:05+00:00"


def test_lost_race_is_retried_as_a_whole(
    client: TestClient, write_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = customers_service.store
    calls: list[int] = []

    def loses_once(*args: object, **kwargs: object) -> IngestResult:
        calls.append(1)
        if len(calls) == 1:
            real(*args, **kwargs)  # type: ignore[arg-type]
            raise IntegrityError("INSERT", {}, Exception("duplicate key"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(api, "store", loses_once)

    response = post(client, "/v1/batch", {"batch": [track("u1", "m1")]}, write_key=write_key)

    assert response.status_code == 200
    assert len(calls) == 2
    assert count(Event) == 1


def test_race_lost_every_time_is_503(
    client: TestClient, write_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def always_loses(*_args: object, **_kwargs: object) -> IngestResult:
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    monkeypatch.setattr(api, "store", always_loses)

    response = post(client, "/v1/batch", {"batch": [track("u1", "m1")]}, write_key=write_key)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"


def test_concurrent_batches_for_one_new_user_make_one_profile(
    client: TestClient, write_key: str
) -> None:
    def send(n: int) -> int:
        batch = [track("newcomer", f"m{n}-{i}") for i in range(20)]
        return post(client, "/v1/batch", {"batch": batch}, write_key=write_key).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(send, range(16)))

    assert statuses == [200] * 16
    assert count(Customer) == 1
    assert profile_of("newcomer").facts.events_count == 16 * 20
