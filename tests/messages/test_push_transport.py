"""Web Push end to end: real RFC 8291 encryption and RFC 8292 signatures, against a local HTTP
server standing in for the push service (it answers the status named in the endpoint's path).
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import http_ece
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import ValidationError

from regulars.kit import clock
from regulars.messages import vapid
from regulars.messages.channels.base import (
    Accepted,
    Outcome,
    Outgoing,
    PermanentError,
    PushTarget,
    TransientError,
)
from regulars.messages.channels.push import WebPushTransport
from regulars.messages.models import Category, MessageChannel
from tests.messages.push_service import BrowserKeys, PushService, running_push_service

NOW = datetime(2031, 5, 4, 9, 30, tzinfo=UTC)
KEYS = vapid.generate_keys()
CONTENT = {
    "title": "Your order shipped",
    "body": "Café crème beans are on their way",
    "icon": "https://shop.example/icon.png",
    "url": "https://shop.example/orders/42",
    "actions": [{"action": "track", "title": "Track", "url": "https://shop.example/t/42"}],
}


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


# RFC 8291 section 5 and appendix A, base64url as printed there.
RFC_PLAINTEXT = b"When I grow up, I want to be a watermelon"
RFC_AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
RFC_AS_PUBLIC = (
    "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
)
RFC_UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
RFC_UA_PUBLIC = (
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
)
RFC_AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
RFC_SALT = "DGv6ra1nlYgDCS1FRnbzlw"
RFC_BODY = (
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYW"
    "AmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxs"
    "j_Qulcy4a-fN"
)


def _rfc_key(private: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(_decode(private), "big"), ec.SECP256R1())


def test_http_ece_reproduces_the_rfc_8291_example_byte_for_byte() -> None:
    sender, receiver = _rfc_key(RFC_AS_PRIVATE), _rfc_key(RFC_UA_PRIVATE)
    assert _point(sender) == _decode(RFC_AS_PUBLIC)
    assert _point(receiver) == _decode(RFC_UA_PUBLIC)

    body = http_ece.encrypt(
        RFC_PLAINTEXT,
        salt=_decode(RFC_SALT),
        private_key=sender,
        dh=_decode(RFC_UA_PUBLIC),
        auth_secret=_decode(RFC_AUTH),
        version="aes128gcm",
    )

    assert body == _decode(RFC_BODY)


def test_http_ece_decrypts_the_rfc_8291_example_as_the_browser_would() -> None:
    plaintext = http_ece.decrypt(
        _decode(RFC_BODY),
        private_key=_rfc_key(RFC_UA_PRIVATE),
        auth_secret=_decode(RFC_AUTH),
        version="aes128gcm",
    )
    assert plaintext == RFC_PLAINTEXT


# The push service stand-in ---------------------------------------------------------------


@pytest.fixture
def push_service() -> Iterator[PushService]:
    with running_push_service() as service:
        yield service


@pytest.fixture
def transport() -> Iterator[WebPushTransport]:
    sender = WebPushTransport(
        {"vapid_private_key": KEYS.private_key, "vapid_subject": "mailto:ops@shop.example"}
    )
    yield sender
    sender.close()


class Browser(BrowserKeys):
    """A subscriber, as the transport sees it: its keys as a push target."""

    def target(self, endpoint: str) -> PushTarget:
        return PushTarget(endpoint, p256dh=_encode(_point(self.key)), auth=_encode(self.auth))


def _message(
    endpoint: str, browser: Browser, *, delivery_id: str = "dlv_1", content: Any = None
) -> Outgoing:
    return Outgoing(
        delivery_id=delivery_id,
        channel=MessageChannel.PUSH,
        category=Category.TRANSACTIONAL,
        customer_id="cus_1",
        address=endpoint,
        content=CONTENT if content is None else content,
        push=browser.target(endpoint),
    )


def _send_one(transport: WebPushTransport, message: Outgoing) -> Outcome:
    [outcome] = transport.send_many([message])
    return outcome


def _verified_claims(authorization: str) -> dict[str, Any]:
    """Check `vapid t=<JWT>,k=<key>` as a push service does; answer the JWT's claims."""
    scheme, _, params = authorization.partition(" ")
    assert scheme == "vapid"
    parts = dict(param.strip().split("=", 1) for param in params.split(","))
    assert parts["k"] == KEYS.public_key
    header, claims, signature = parts["t"].split(".")
    assert json.loads(_decode(header)) == {"typ": "JWT", "alg": "ES256"}
    raw = _decode(signature)
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _decode(KEYS.public_key))
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))  # or raises
    result: dict[str, Any] = json.loads(_decode(claims))
    return result


# Sending ---------------------------------------------------------------------------------


def test_push_reaches_the_browser_encrypted_and_vapid_signed(
    push_service: PushService, transport: WebPushTransport
) -> None:
    browser = Browser()
    endpoint = push_service.endpoint(201, "abc")

    with clock.frozen(NOW):
        outcome = _send_one(transport, _message(endpoint, browser, delivery_id="dlv_42"))

    assert outcome == Accepted(provider_message_id="https://push.example/m/wpush/201/abc")
    [request] = push_service.received
    assert request.headers["content-encoding"] == "aes128gcm"
    assert request.headers["ttl"] == "86400"
    assert request.headers["urgency"] == "normal"
    assert len(request.body) <= 4096
    assert browser.read(request.body) == {**CONTENT, "delivery_id": "dlv_42"}
    claims = _verified_claims(request.headers["authorization"])
    assert claims["aud"] == f"http://127.0.0.1:{push_service.port}"
    assert claims["sub"] == "mailto:ops@shop.example"
    assert claims["exp"] == int((NOW + timedelta(hours=12)).timestamp())
    assert claims["exp"] > NOW.timestamp()


def test_another_browser_cannot_read_the_message(
    push_service: PushService, transport: WebPushTransport
) -> None:
    _send_one(transport, _message(push_service.endpoint(201), Browser()))

    stranger = Browser()
    with pytest.raises(http_ece.ECEException, match="Decryption error"):
        stranger.read(push_service.received[0].body)


def test_ttl_and_urgency_come_from_the_config(push_service: PushService) -> None:
    config = {
        "vapid_private_key": KEYS.private_key,
        "vapid_subject": "https://shop.example/contact",
        "ttl": 600,
        "urgency": "high",
    }
    sender = WebPushTransport(config)
    try:
        _send_one(sender, _message(push_service.endpoint(201), Browser()))
    finally:
        sender.close()

    [request] = push_service.received
    assert (request.headers["ttl"], request.headers["urgency"]) == ("600", "high")
    assert _verified_claims(request.headers["authorization"])["sub"] == config["vapid_subject"]


def test_batch_answers_in_order_over_one_connection(
    push_service: PushService, transport: WebPushTransport
) -> None:
    browser = Browser()
    statuses = [201, 410, 202, 500]
    messages = [
        _message(push_service.endpoint(status), browser, delivery_id=f"dlv_{i}")
        for i, status in enumerate(statuses)
    ]

    outcomes = transport.send_many(messages)

    assert [type(outcome) for outcome in outcomes] == [
        Accepted,
        PermanentError,
        Accepted,
        TransientError,
    ]
    assert [browser.read(r.body)["delivery_id"] for r in push_service.received] == [
        "dlv_0",
        "dlv_1",
        "dlv_2",
        "dlv_3",
    ]
    assert len({r.client_port for r in push_service.received}) == 1


@pytest.mark.parametrize("status", [404, 410])
def test_expired_subscription_is_permanent_and_gone(
    push_service: PushService, transport: WebPushTransport, status: int
) -> None:
    outcome = _send_one(transport, _message(push_service.endpoint(status), Browser()))

    assert isinstance(outcome, PermanentError)
    assert outcome.gone
    assert outcome.detail == f"push service answered {status}: subscription says no"


@pytest.mark.parametrize("status", [400, 403, 413])
def test_refused_request_is_permanent_but_keeps_the_subscription(
    push_service: PushService, transport: WebPushTransport, status: int
) -> None:
    outcome = _send_one(transport, _message(push_service.endpoint(status), Browser()))

    assert isinstance(outcome, PermanentError)
    assert not outcome.gone
    assert str(status) in outcome.detail


@pytest.mark.parametrize("status", [429, 500, 503])
def test_overload_and_server_errors_are_transient(
    push_service: PushService, transport: WebPushTransport, status: int
) -> None:
    outcome = _send_one(transport, _message(push_service.endpoint(status), Browser()))

    assert isinstance(outcome, TransientError)
    assert str(status) in outcome.detail


def test_closed_port_is_transient(transport: WebPushTransport) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}/wpush/201/sub"

    outcome = _send_one(transport, _message(endpoint, Browser()))

    assert isinstance(outcome, TransientError)
    assert "unreachable" in outcome.detail


def test_silent_push_service_times_out_as_transient() -> None:
    sender = WebPushTransport(
        {
            "vapid_private_key": KEYS.private_key,
            "vapid_subject": "mailto:ops@shop.example",
            "timeout": 0.2,
        }
    )
    with socket.socket() as silent:  # listens, so connecting works, but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}/wpush/201/sub"
        outcome = _send_one(sender, _message(endpoint, Browser()))
    sender.close()

    assert isinstance(outcome, TransientError)
    assert "timed out" in outcome.detail


# Refused before any request ---------------------------------------------------------------


def test_payload_over_the_push_limit_is_permanent_and_not_sent(
    push_service: PushService, transport: WebPushTransport
) -> None:
    content = {**CONTENT, "body": "x" * 4000}

    outcome = _send_one(transport, _message(push_service.endpoint(201), Browser(), content=content))

    assert isinstance(outcome, PermanentError)
    assert not outcome.gone
    assert "over 3993" in outcome.detail
    assert push_service.received == []


def test_largest_payload_fits_one_push_body(
    push_service: PushService, transport: WebPushTransport
) -> None:
    browser = Browser()
    empty = {"title": "t", "body": "", "icon": "", "url": "", "actions": [], "delivery_id": "dlv_1"}
    filler = "y" * (3993 - len(json.dumps(empty, separators=(",", ":"))))
    full = _message(push_service.endpoint(201), browser, content={"title": "t", "body": filler})

    assert isinstance(_send_one(transport, full), Accepted)
    [request] = push_service.received
    assert len(request.body) == 4096
    assert browser.read(request.body)["body"] == filler


def test_malformed_subscription_keys_are_gone_without_a_request(
    push_service: PushService, transport: WebPushTransport
) -> None:
    endpoint = push_service.endpoint(201)
    message = _message(endpoint, Browser())
    broken = Outgoing(**{**_fields(message), "push": PushTarget(endpoint, "BAAA", "xyz")})

    outcome = _send_one(transport, broken)

    assert isinstance(outcome, PermanentError)
    assert outcome.gone
    assert push_service.received == []


@pytest.mark.parametrize("endpoint", ["ftp://push.example/x", "not a url", "https:///nohost"])
def test_endpoint_that_is_no_http_url_is_gone(transport: WebPushTransport, endpoint: str) -> None:
    outcome = _send_one(transport, _message(endpoint, Browser()))

    assert isinstance(outcome, PermanentError)
    assert outcome.gone


def test_message_without_subscription_keys_is_permanent(transport: WebPushTransport) -> None:
    message = Outgoing(**{**_fields(_message("https://push.example/x", Browser())), "push": None})

    outcome = _send_one(transport, message)

    assert isinstance(outcome, PermanentError)
    assert not outcome.gone


def _fields(message: Outgoing) -> dict[str, Any]:
    return {name: getattr(message, name) for name in Outgoing.__dataclass_fields__}


# Config -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"vapid_private_key": "AAAA"}, "raw 32-byte P-256 key"),
        ({"vapid_subject": "ops@shop.example"}, "mailto: address or an https:// URL"),
        ({"vapid_subject": "http://shop.example"}, "mailto: address or an https:// URL"),
        ({"urgency": "urgent"}, "urgency"),
        ({"ttl": -1}, "ttl"),
        ({"timeout": 0}, "timeout"),
        ({"api_key": "x"}, "api_key"),
    ],
)
def test_config_is_refused_with_the_field_at_fault(change: dict[str, Any], complaint: str) -> None:
    config = {
        "vapid_private_key": KEYS.private_key,
        "vapid_subject": "mailto:ops@shop.example",
        **change,
    }
    with pytest.raises(ValidationError, match=complaint):
        WebPushTransport(config)
