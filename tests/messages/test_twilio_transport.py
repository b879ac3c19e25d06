"""The Twilio SMS and WhatsApp transports against the loopback fake of Twilio's API, and the
webhook signature against the official `twilio` package's RequestValidator."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from regulars.messages.channels.base import (
    Accepted,
    Outcome,
    Outgoing,
    PermanentError,
    TransientError,
)
from regulars.messages.channels.sms import TwilioSmsTransport
from regulars.messages.channels.twilio import (
    TwilioConfig,
    TwilioTransport,
    delivery_status_of,
    is_bounce,
    twilio_signature,
    verify_twilio_signature,
)
from regulars.messages.channels.whatsapp import TwilioWhatsAppTransport
from regulars.messages.models import Category, DeliveryStatus, MessageChannel
from tests.messages.twilio_fake import FROM_NUMBER, FakeTwilio, inbound_message

CALLBACK = "https://shop.example/webhooks/twilio/status"
CONTENT_SID = "HX" + "ab" * 16
SERVICE_SID = "MG" + "cd" * 16


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server


def _outgoing(address: str, content: dict[str, Any], channel: MessageChannel) -> Outgoing:
    return Outgoing(
        delivery_id="01DELIVERY",
        channel=channel,
        category=Category.TRANSACTIONAL,
        customer_id="01CUSTOMER",
        address=address,
        content=content,
    )


def sms(address: str, body: str = "Your order A-1042 has shipped.") -> Outgoing:
    content = {"body": body, "encoding": "gsm7", "segments": 1}
    return _outgoing(address, content, MessageChannel.SMS)


def whatsapp(address: str, content: dict[str, Any]) -> Outgoing:
    return _outgoing(address, content, MessageChannel.WHATSAPP)


def send_sms(config: dict[str, Any], *messages: Outgoing) -> list[Outcome]:
    return _send(TwilioSmsTransport(config), messages)


def send_whatsapp(config: dict[str, Any], *messages: Outgoing) -> list[Outcome]:
    return _send(TwilioWhatsAppTransport(config), messages)


def _send(transport: TwilioTransport, messages: tuple[Outgoing, ...]) -> list[Outcome]:
    try:
        return transport.send_many(messages)
    finally:
        transport.close()


# Sending ---------------------------------------------------------------------------------


def test_sms_posts_to_from_body_and_status_callback(fake: FakeTwilio) -> None:
    [outcome] = send_sms(fake.config(status_callback_url=CALLBACK), sms("+14155550100"))

    [request] = fake.requests
    assert request.path == f"/2010-04-01/Accounts/{fake.account_sid}/Messages.json"
    assert request.form == {
        "To": "+14155550100",
        "From": FROM_NUMBER,
        "Body": "Your order A-1042 has shipped.",
        "StatusCallback": CALLBACK,
    }
    assert isinstance(outcome, Accepted)
    assert outcome.status is DeliveryStatus.SENT
    assert outcome.provider_message_id in fake.messages
    assert fake.messages[outcome.provider_message_id]["status"] == "queued"


def test_no_status_callback_field_without_a_callback_url(fake: FakeTwilio) -> None:
    send_sms(fake.config(), sms("+14155550100"))

    assert "StatusCallback" not in fake.requests[0].form


def test_messaging_service_is_sent_instead_of_from(fake: FakeTwilio) -> None:
    config = fake.config(from_number=None, messaging_service_sid=SERVICE_SID)

    [outcome] = send_sms(config, sms("+14155550100"))

    form = fake.requests[0].form
    assert form["MessagingServiceSid"] == SERVICE_SID
    assert "From" not in form
    assert isinstance(outcome, Accepted)


def test_whatsapp_free_text_prefixes_both_addresses(fake: FakeTwilio) -> None:
    message = whatsapp("+447700900123", {"body": "Your table is ready."})

    [outcome] = send_whatsapp(fake.config(), message)

    form = fake.requests[0].form
    assert form["To"] == "whatsapp:+447700900123"
    assert form["From"] == f"whatsapp:{FROM_NUMBER}"
    assert form["Body"] == "Your table is ready."
    assert isinstance(outcome, Accepted)


def test_whatsapp_template_sends_content_sid_and_numbered_variables(fake: FakeTwilio) -> None:
    template = {"name": CONTENT_SID, "language": "en", "parameters": ["Ada", "A-1042 «fast»"]}
    message = whatsapp("+447700900123", {"template": template})

    [outcome] = send_whatsapp(fake.config(), message)

    form = fake.requests[0].form
    assert form["ContentSid"] == CONTENT_SID
    assert json.loads(form["ContentVariables"]) == {"1": "Ada", "2": "A-1042 «fast»"}
    assert "Body" not in form
    assert isinstance(outcome, Accepted)


def test_whatsapp_template_without_parameters_sends_no_variables(fake: FakeTwilio) -> None:
    message = whatsapp("+447700900123", {"template": {"name": CONTENT_SID, "parameters": []}})

    send_whatsapp(fake.config(), message)

    assert "ContentVariables" not in fake.requests[0].form


def test_whatsapp_template_name_that_is_no_content_sid_fails_before_sending(
    fake: FakeTwilio,
) -> None:
    message = whatsapp("+447700900123", {"template": {"name": "order_shipped", "parameters": []}})

    [outcome] = send_whatsapp(fake.config(), message)

    assert isinstance(outcome, PermanentError)
    assert not outcome.bounce
    assert "Content SID" in outcome.detail
    assert fake.requests == []


@pytest.mark.parametrize("body", ["", "   "])
def test_sms_without_a_body_fails_before_sending(fake: FakeTwilio, body: str) -> None:
    [outcome] = send_sms(fake.config(), sms("+14155550100", body))

    assert isinstance(outcome, PermanentError)
    assert fake.requests == []


# Errors ----------------------------------------------------------------------------------


def test_wrong_auth_token_is_transient_and_points_at_the_credentials(fake: FakeTwilio) -> None:
    [outcome] = send_sms(fake.config(auth_token="not-the-token"), sms("+14155550100"))

    assert isinstance(outcome, TransientError)
    assert "401" in outcome.detail
    assert "20003" in outcome.detail
    assert "auth_token" in outcome.detail
    assert fake.requests[0].authorized is False
    assert fake.messages == {}


def test_an_invalid_number_bounces(fake: FakeTwilio) -> None:
    [outcome] = send_sms(fake.config(), sms("+1555"))

    assert isinstance(outcome, PermanentError)
    assert outcome.bounce
    assert "21211" in outcome.detail
    assert "+1555" in outcome.detail


@pytest.mark.parametrize("code", [21211, 21610, 21614])
def test_refused_recipients_bounce(fake: FakeTwilio, code: int) -> None:
    fake.refuse("+14155550199", code)

    [outcome] = send_sms(fake.config(), sms("+14155550199"))

    assert isinstance(outcome, PermanentError)
    assert outcome.bounce
    assert str(code) in outcome.detail


def test_a_sender_problem_is_transient_so_another_provider_may_send(fake: FakeTwilio) -> None:
    fake.refuse("+14155550199", 21606)

    [outcome] = send_sms(fake.config(), sms("+14155550199"))

    assert isinstance(outcome, TransientError)
    assert "21606" in outcome.detail


def test_a_message_error_is_permanent_without_bouncing(fake: FakeTwilio) -> None:
    fake.refuse("+14155550199", 21656)

    [outcome] = send_sms(fake.config(), sms("+14155550199"))

    assert isinstance(outcome, PermanentError)
    assert not outcome.bounce


@pytest.mark.parametrize("status", [429, 500, 503])
def test_server_errors_are_transient_per_message(fake: FakeTwilio, status: int) -> None:
    fake.fail_next(1, status)

    outcomes = send_sms(fake.config(), sms("+14155550100"), sms("+14155550101"))

    assert isinstance(outcomes[0], TransientError)
    assert str(status) in outcomes[0].detail
    assert isinstance(outcomes[1], Accepted)
    assert [r.status_code for r in fake.requests] == [status, 201]


def test_outcomes_follow_the_messages_order(fake: FakeTwilio) -> None:
    messages = [sms("+14155550100"), sms("+1555"), sms("+14155550102")]

    outcomes = send_sms(fake.config(), *messages)

    assert [type(o) for o in outcomes] == [Accepted, PermanentError, Accepted]
    sids = [o.provider_message_id for o in outcomes if isinstance(o, Accepted)]
    assert [fake.messages[str(sid)]["to"] for sid in sids] == ["+14155550100", "+14155550102"]


def test_a_batch_uses_one_kept_alive_connection(fake: FakeTwilio) -> None:
    outcomes = send_sms(fake.config(), *(sms(f"+1415555010{n}") for n in range(5)))

    assert all(isinstance(o, Accepted) for o in outcomes)
    assert len(fake.requests) == 5
    assert len({r.client_port for r in fake.requests}) == 1


def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = {
        "account_sid": "AC" + "0" * 32,
        "auth_token": "token",
        "base_url": f"http://127.0.0.1:{port}",
        "from_number": FROM_NUMBER,
    }

    [outcome] = send_sms(config, sms("+14155550100"))

    assert isinstance(outcome, TransientError)
    assert "unreachable" in outcome.detail


def test_a_server_that_never_answers_times_out_as_transient() -> None:
    with socket.socket() as listener:  # accepts connections (backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        config = {
            "account_sid": "AC" + "0" * 32,
            "auth_token": "token",
            "base_url": f"http://127.0.0.1:{port}",
            "from_number": FROM_NUMBER,
            "timeout": 0.2,
        }

        [outcome] = send_sms(config, sms("+14155550100"))

    assert isinstance(outcome, TransientError)
    assert "0.2 s" in outcome.detail


# Configuration ---------------------------------------------------------------------------


def _valid_config(**overrides: Any) -> dict[str, Any]:
    base = {"account_sid": "AC" + "1" * 32, "auth_token": "token", "from_number": "+15005550006"}
    return {**base, **overrides}


@pytest.mark.parametrize(
    "overrides",
    [
        {"from_number": None},  # no sender at all
        {"from_number": "5005550006"},  # not E.164
        {"account_sid": "AC123"},
        {"messaging_service_sid": "MG123"},
        {"timeout": 0},
        {"base_url": "api.twilio.com"},
        {"api_key": "SK123"},  # unknown fields are refused
    ],
)
def test_config_refuses_mistakes(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TwilioConfig.model_validate(_valid_config(**overrides))


def test_config_defaults_to_twilios_api() -> None:
    config = TwilioConfig.model_validate(_valid_config())

    assert config.base_url == "https://api.twilio.com"
    assert config.timeout == 10
    assert config.status_callback_url is None


def test_both_transports_declare_their_channel_and_config() -> None:
    assert TwilioSmsTransport.kind == "twilio_sms"
    assert TwilioSmsTransport.channels == {MessageChannel.SMS}
    assert TwilioWhatsAppTransport.kind == "twilio_whatsapp"
    assert TwilioWhatsAppTransport.channels == {MessageChannel.WHATSAPP}
    assert TwilioSmsTransport.Config is TwilioWhatsAppTransport.Config is TwilioConfig


# The fake speaks Twilio: the official SDK reads it -----------------------------------------


def _sdk(fake: FakeTwilio) -> Any:
    client = Client(fake.account_sid, fake.auth_token)
    client.api.base_url = fake.url
    return client


def test_the_official_sdk_reads_the_fakes_message_resource(fake: FakeTwilio) -> None:
    message = _sdk(fake).messages.create(to="+14155550100", from_=FROM_NUMBER, body="héllo")

    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert message.status == "queued"
    assert message.to == "+14155550100"
    assert message.num_segments == "1"
    assert message.date_created is not None and message.date_created.tzinfo is not None
    fetched = _sdk(fake).messages(message.sid).fetch()
    assert fetched.body == "héllo"


def test_the_official_sdk_reads_the_fakes_errors(fake: FakeTwilio) -> None:
    with pytest.raises(TwilioRestException) as raised:
        _sdk(fake).messages.create(to="+1555", from_=FROM_NUMBER, body="hi")

    assert raised.value.status == 400
    assert raised.value.code == 21211


# Webhook signatures ----------------------------------------------------------------------

_URLS = st.sampled_from(
    [
        "https://shop.example/webhooks/twilio",
        "https://shop.example:8443/webhooks/twilio?provider=sms",
        "http://127.0.0.1:8000/hook",
        "https://shop.example/é?x=1&y=2",
    ]
)
_PARAMS = st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=8)
_TOKENS = st.text(min_size=1, max_size=40)


@given(url=_URLS, params=_PARAMS, token=_TOKENS)
def test_our_signature_is_twilios(url: str, params: dict[str, str], token: str) -> None:
    official = RequestValidator(token).compute_signature(url, params)

    assert twilio_signature(url, params, token) == official
    assert verify_twilio_signature(url, params, official, token)


@given(params=_PARAMS.filter(bool), token=_TOKENS, data=st.data())
def test_a_tampered_field_is_refused(
    params: dict[str, str], token: str, data: st.DataObject
) -> None:
    url = "https://shop.example/webhooks/twilio"
    signature = RequestValidator(token).compute_signature(url, params)
    key = data.draw(st.sampled_from(sorted(params)))
    tampered = {**params, key: params[key] + "x"}

    assert not verify_twilio_signature(url, tampered, signature, token)


def test_a_wrong_token_or_url_is_refused() -> None:
    url = "https://shop.example/webhooks/twilio"
    params = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"}
    signature = RequestValidator("right-token").compute_signature(url, params)

    assert verify_twilio_signature(url, params, signature, "right-token")
    assert not verify_twilio_signature(url, params, signature, "wrong-token")
    assert not verify_twilio_signature(url + "/other", params, signature, "right-token")
    assert not verify_twilio_signature(url, params, "", "right-token")
    assert not verify_twilio_signature(url, params, "sïgnature", "right-token")


_PORT_URLS = [
    "https://shop.example/hook",
    "https://shop.example:443/hook",
    "https://shop.example:8443/hook",
    "http://shop.example/hook",
    "http://shop.example:80/hook",
    "http://shop.example:8000/hook?a=1",
    "http://shop.example/hook?a=1",
]


@pytest.mark.parametrize("signed_url", _PORT_URLS)
@pytest.mark.parametrize("seen_url", _PORT_URLS)
def test_ports_are_handled_as_twilios_validator_does(signed_url: str, seen_url: str) -> None:
    params = {"Body": "STOP", "From": "+14155550100"}
    signature = RequestValidator("token").compute_signature(signed_url, params)

    official = RequestValidator("token").validate(seen_url, params, signature)

    assert verify_twilio_signature(seen_url, params, signature, "token") == official


def test_https_default_port_is_accepted_both_ways() -> None:
    params = {"Body": "hi"}
    with_port = RequestValidator("t").compute_signature("https://shop.example:443/hook", params)
    without = RequestValidator("t").compute_signature("https://shop.example/hook", params)

    assert verify_twilio_signature("https://shop.example/hook", params, with_port, "t")
    assert verify_twilio_signature("https://shop.example:443/hook", params, without, "t")


def _receiver(seen: list[tuple[str, dict[str, str], str]]) -> TestClient:
    async def receive(request: Request) -> PlainTextResponse:
        form = {k: v for k, v in (await request.form()).multi_items() if isinstance(v, str)}
        seen.append((str(request.url), form, request.headers.get("x-twilio-signature", "")))
        return PlainTextResponse("")

    return TestClient(Starlette(routes=[Route("/status", receive, methods=["POST"])]))


def test_fake_status_callbacks_verify_with_our_check(fake: FakeTwilio) -> None:
    url = "http://testserver/status"
    [outcome] = send_sms(fake.config(status_callback_url=url), sms("+14155550100"))
    assert isinstance(outcome, Accepted) and outcome.provider_message_id
    seen: list[tuple[str, dict[str, str], str]] = []

    with _receiver(seen) as client:
        fake.status_callback(
            outcome.provider_message_id, "undelivered", error_code=30005, client=client
        )

    [(seen_url, form, signature)] = seen
    assert seen_url == url
    assert form["MessageSid"] == outcome.provider_message_id
    assert form["MessageStatus"] == "undelivered"
    assert form["To"] == "+14155550100"
    assert verify_twilio_signature(seen_url, form, signature, fake.auth_token)
    assert not verify_twilio_signature(seen_url, form, signature, "another-token")
    assert delivery_status_of(form["MessageStatus"], error_code=form["ErrorCode"]) is (
        DeliveryStatus.BOUNCED
    )


def test_inbound_messages_are_signed_for_their_url() -> None:
    url = "https://shop.example/webhooks/twilio/inbound"
    account = "AC" + "2" * 32
    form, headers = inbound_message(
        url,
        auth_token="tok",
        account_sid=account,
        from_="+14155550100",
        to=FROM_NUMBER,
        body="STOP",
    )

    assert form["Body"] == "STOP" and form["NumMedia"] == "0"
    assert verify_twilio_signature(url, form, headers["X-Twilio-Signature"], "tok")
    assert not verify_twilio_signature(
        url, {**form, "Body": "START"}, headers["X-Twilio-Signature"], "tok"
    )


# Statuses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("twilio_status", "expected"),
    [
        ("accepted", DeliveryStatus.SENT),
        ("queued", DeliveryStatus.SENT),
        ("sending", DeliveryStatus.SENT),
        ("sent", DeliveryStatus.SENT),
        ("delivered", DeliveryStatus.DELIVERED),
        ("read", DeliveryStatus.OPENED),
        ("undelivered", DeliveryStatus.FAILED),
        ("failed", DeliveryStatus.FAILED),
        ("Delivered", DeliveryStatus.DELIVERED),
        ("received", None),
        ("canceled", None),
        ("partially_delivered", None),
        ("", None),
    ],
)
def test_delivery_status_of_twilio_statuses(
    twilio_status: str, expected: DeliveryStatus | None
) -> None:
    assert delivery_status_of(twilio_status) is expected


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        ("failed", "30005", DeliveryStatus.BOUNCED),
        ("undelivered", 30006, DeliveryStatus.BOUNCED),
        ("failed", "21610", DeliveryStatus.BOUNCED),
        ("undelivered", "30003", DeliveryStatus.FAILED),  # handset off: temporary
        ("undelivered", "30007", DeliveryStatus.FAILED),  # carrier filtering
        ("failed", None, DeliveryStatus.FAILED),
        ("delivered", "30005", DeliveryStatus.DELIVERED),  # only failures bounce
    ],
)
def test_failures_on_bad_addresses_are_bounces(
    status: str, code: str | int | None, expected: DeliveryStatus
) -> None:
    assert delivery_status_of(status, error_code=code) is expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (30005, True),
        ("30006", True),
        (" 21211 ", True),
        (21614, True),
        (63003, True),
        (30003, False),
        (30008, False),
        ("", False),
        ("abc", False),
        (None, False),
    ],
)
def test_is_bounce(code: str | int | None, expected: bool) -> None:
    assert is_bounce(code) is expected
