"""Whatever a client sends, the answer is a 2xx or a 4xx that says why: never a 500."""

from __future__ import annotations

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ingestion.helpers import post

FIELDS = (
    "type",
    "userId",
    "anonymousId",
    "previousId",
    "groupId",
    "traits",
    "properties",
    "context",
    "event",
    "name",
    "timestamp",
    "sentAt",
    "messageId",
    "integrations",
)
TYPES = ("identify", "track", "page", "screen", "group", "alias")
PATHS = ("/v1/batch", *(f"/v1/{kind}" for kind in TYPES))
ANSWERS = {200, 400, 401, 413, 415}
JUNK = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES) | json_values},
    optional={field: json_values for field in FIELDS if field != "type"},
)


@pytest.fixture
def junk_client(app: FastAPI) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


@JUNK
@given(path=st.sampled_from(PATHS), body=st.binary(max_size=300))
def test_random_bytes_are_never_a_500(
    junk_client: TestClient, write_key: str, path: str, body: bytes
) -> None:
    response = post(junk_client, path, body, write_key=write_key)

    assert response.status_code in ANSWERS, response.text


@JUNK
@given(path=st.sampled_from(PATHS), body=json_values)
def test_random_json_bodies_are_never_a_500(
    junk_client: TestClient, write_key: str, path: str, body: object
) -> None:
    response = post(junk_client, path, _json(body), write_key=write_key)

    assert response.status_code in ANSWERS, response.text


@JUNK
@given(
    batch=st.lists(messages | json_values, max_size=8),
    shared=st.dictionaries(
        st.sampled_from(("context", "sentAt", "integrations", "writeKey")), json_values
    ),
)
def test_batches_of_wrong_types_in_every_field_are_never_a_500(
    junk_client: TestClient, write_key: str, batch: list[object], shared: dict[str, object]
) -> None:
    response = post(junk_client, "/v1/batch", {**shared, "batch": batch}, write_key=write_key)

    assert response.status_code == 200, response.text
    assert len(response.json().get("rejected", [])) <= len(batch)


@JUNK
@given(kind=st.sampled_from(TYPES), message=messages)
def test_single_messages_of_wrong_types_in_every_field_are_never_a_500(
    junk_client: TestClient, write_key: str, kind: str, message: dict[str, object]
) -> None:
    response = post(junk_client, f"/v1/{kind}", message, write_key=write_key)

    assert response.status_code in {200, 400}, response.text


def _track(extra: bytes, user_id: bytes = b'"u"', event: bytes = b'"e"') -> bytes:
    return (
        b'{"batch": [{"type": "track", "userId": '
        + user_id
        + b', "event": '
        + event
        + extra
        + b"}]}"
    )


EDGE_CASES = {
    "number-overflowing-a-double": _track(b', "properties": {"n": 1e400}'),
    "integer-of-40-digits": _track(b', "properties": {"n": ' + b"9" * 40 + b"}"),
    "nul-in-user-id": _track(b"", user_id=b'"u\\u0000"'),
    "nul-in-event-name": _track(b"", event=b'"e\\u0000"'),
    "nul-in-property": _track(b', "properties": {"k": "\\u0000"}'),
    "nul-in-property-key": _track(b', "properties": {"k\\u0000": 1}'),
    "nul-in-context": _track(b', "context": {"ip": "\\u0000"}'),
    "lone-surrogate": _track(b"", user_id=b'"\\ud800"'),
    "nul-in-email": b'{"batch": [{"type": "identify", "userId": "u", '
    + b'"traits": {"email": "a\\u0000@b.co"}}]}',
    "nul-in-trait": b'{"batch": [{"type": "identify", "userId": "u", "traits": {"x": "\\u0000"}}]}',
    "impossible-date": _track(b', "timestamp": "9999-99-99"'),
    "year-one": _track(b', "timestamp": "0001-01-01T00:00:00Z"'),
    "year-9999": _track(b', "timestamp": "9999-12-31T23:59:59+14:00"'),
    "long-user-id": _track(b"", user_id=b'"' + b"u" * 300 + b'"'),
    "long-event-name": _track(b"", event=b'"' + b"e" * 300 + b'"'),
    "long-message-id": _track(b', "messageId": "' + b"m" * 300 + b'"'),
    "deep-nesting": b'{"batch": ' + b"[" * 2000 + b"]" * 2000 + b"}",
    "shared-fields-of-wrong-types": b'{"batch": [], "sentAt": {"a": 1}, "context": [1]}',
    "byte-order-mark": b'\xef\xbb\xbf{"batch": []}',
    "batch-key-twice": b'{"batch": [{"type": "track", "userId": "u", "event": "e"}], "batch": 1}',
}


@pytest.mark.parametrize("body", EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_edge_cases_are_never_a_500(junk_client: TestClient, write_key: str, body: bytes) -> None:
    response = post(junk_client, "/v1/batch", body, write_key=write_key)

    assert response.status_code in ANSWERS, response.text


def _json(value: object) -> bytes:
    return orjson.dumps(value)
