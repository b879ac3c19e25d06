"""WebhookTransport against a real HTTP server (http.server in a thread)."""

from __future__ import annotations

import hmac
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from regulars.kit import clock
from regulars.kit.webhooks import sign, verify_signature
from regulars.messages.channels.base import (
    Accepted,
    Outcome,
    Outgoing,
    PermanentError,
    TransientError,
)
from regulars.messages.channels.webhook import WebhookTransport
from regulars.messages.models import Category, MessageChannel
from tests.messages.smtp_sink import free_port

SECRET = "whsec_test_3f9a"
SENT_AT = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int]


class Receiver(ThreadingHTTPServer):
    """Answers POST /status/<code> with that code; POST /hang waits until the test ends."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[Request] = []
        self.release = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.requests.append(Request(self.path, headers, body, self.client_address))
        if self.path == "/hang":
            self.server.release.wait()
        status = int(self.path.removeprefix("/status/")) if "/status/" in self.path else 200
        reply = b'{"error": "nope"}' if status >= 300 else b""
        self.send_response(status)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def _hook(n: int, url: str, payload: Any = None) -> Outgoing:
    return Outgoing(
        delivery_id=f"01JDELIVERY{n:015d}",
        channel=MessageChannel.WEBHOOK,
        category=Category.TRANSACTIONAL,
        customer_id=f"customer-{n}",
        address=f"customer-{n}",
        content={
            "url": url,
            "payload": {"order": n, "name": "Zoë"} if payload is None else payload,
        },
    )


def _send(messages: list[Outgoing], **config: Any) -> list[Outcome]:
    transport = WebhookTransport({"secret": SECRET} | config)
    try:
        return transport.send_many(messages)
    finally:
        transport.close()


def test_post_carries_the_payload_and_a_signature_the_receiver_can_verify(
    receiver: Receiver,
) -> None:
    with clock.frozen(SENT_AT):
        [outcome] = _send([_hook(1, receiver.url("/hooks/orders"))])

    assert isinstance(outcome, Accepted)
    [request] = receiver.requests
    assert request.path == "/hooks/orders"
    assert orjson.loads(request.body) == {"order": 1, "name": "Zoë"}
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-regulars-delivery"] == "01JDELIVERY000000000000001"
    timestamp = request.headers["x-regulars-timestamp"]
    assert timestamp == str(int(SENT_AT.timestamp()))
    signature = request.headers["x-regulars-signature"]
    documented = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.body, sha256)
    assert signature == f"v1={documented.hexdigest()}"
    assert verify_signature(SECRET, timestamp, request.body, signature, now=SENT_AT)
    assert not verify_signature("whsec_other", timestamp, request.body, signature, now=SENT_AT)
    assert not verify_signature(SECRET, timestamp, request.body + b" ", signature, now=SENT_AT)
    later = str(int(SENT_AT.timestamp()) + 1)  # the timestamp is signed too
    assert not verify_signature(SECRET, later, request.body, signature, now=SENT_AT)


def test_stale_timestamps_are_rejected(receiver: Receiver) -> None:
    with clock.frozen(SENT_AT) as frozen:
        _send([_hook(1, receiver.url("/"))])
        [request] = receiver.requests
        timestamp = request.headers["x-regulars-timestamp"]
        signature = request.headers["x-regulars-signature"]

        frozen.advance(timedelta(seconds=300))
        assert verify_signature(SECRET, timestamp, request.body, signature, now=clock.now())
        frozen.advance(timedelta(seconds=1))
        assert not verify_signature(SECRET, timestamp, request.body, signature, now=clock.now())
        assert verify_signature(
            SECRET, timestamp, request.body, signature, now=clock.now(), tolerance=600
        )


def test_timestamps_from_the_future_are_rejected_and_garbage_is_not_a_timestamp() -> None:
    body = b"{}"
    ahead = str(int(SENT_AT.timestamp()) + 301)
    assert not verify_signature(SECRET, ahead, body, sign(SECRET, ahead, body), now=SENT_AT)
    assert not verify_signature(SECRET, "soon", body, sign(SECRET, "soon", body), now=SENT_AT)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, Accepted),
        (204, Accepted),
        (500, TransientError),
        (503, TransientError),
        (429, TransientError),
        (408, TransientError),
        (400, PermanentError),
        (404, PermanentError),
        (410, PermanentError),
        (302, PermanentError),  # redirects are not followed
    ],
)
def test_status_codes_map_to_outcomes(
    receiver: Receiver, status: int, expected: type[Outcome]
) -> None:
    [outcome] = _send([_hook(1, receiver.url(f"/status/{status}"))])

    assert type(outcome) is expected
    if not isinstance(outcome, Accepted):
        assert f"HTTP {status}" in str(outcome)


def test_a_timeout_is_transient_and_the_batch_goes_on(receiver: Receiver) -> None:
    outcomes = _send([_hook(1, receiver.url("/hang")), _hook(2, receiver.url("/ok"))], timeout=0.2)

    assert [type(outcome) for outcome in outcomes] == [TransientError, Accepted]
    assert "timed out" in str(outcomes[0])


def test_connection_refused_is_transient() -> None:
    [outcome] = _send([_hook(1, f"http://127.0.0.1:{free_port()}/")])

    assert isinstance(outcome, TransientError)


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "not a url", "http://[::1"])
def test_an_unusable_url_is_permanent(url: str) -> None:
    [outcome] = _send([_hook(1, url)])

    assert isinstance(outcome, PermanentError)
    assert not outcome.bounce


def test_a_payload_that_is_not_json_is_permanent(receiver: Receiver) -> None:
    outcomes = _send(
        [_hook(1, receiver.url("/"), payload={"when": object()}), _hook(2, receiver.url("/"))]
    )

    assert [type(outcome) for outcome in outcomes] == [PermanentError, Accepted]
    assert len(receiver.requests) == 1


def test_one_connection_serves_the_batch(receiver: Receiver) -> None:
    outcomes = _send([_hook(n, receiver.url("/")) for n in range(5)])

    assert all(isinstance(outcome, Accepted) for outcome in outcomes)
    assert len({request.peer for request in receiver.requests}) == 1


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValidationError):
        WebhookTransport({"secret": ""})
