"""SMTPTransport against a real SMTP server (aiosmtpd, tests/messages/smtp_sink.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from pydantic import ValidationError

from regulars.kit import clock
from regulars.messages.channels.base import (
    Accepted,
    Outcome,
    Outgoing,
    PermanentError,
    TransientError,
)
from regulars.messages.channels.email import SMTPTransport
from regulars.messages.models import Category, MessageChannel
from tests.messages.smtp_sink import SMTPSink, free_port

pytestmark = [
    # aiosmtpd itself sets the deprecated Session.login_data after every successful AUTH.
    pytest.mark.filterwarnings("ignore:Session.login_data is deprecated"),
    # The plain-text AUTH tests ask for exactly what this warns about.
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
]

FROM = "Boutique Zoë <news@shop.example>"
UNSUBSCRIBE = {
    "List-Unsubscribe": "<https://shop.example/u/tok123>, <mailto:u@shop.example?subject=tok123>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


def _email(n: int, *, address: str | None = None, **content: str) -> Outgoing:
    return Outgoing(
        delivery_id=f"01JDELIVERY{n:015d}",
        channel=MessageChannel.EMAIL,
        category=Category.MARKETING,
        customer_id=f"customer-{n}",
        address=address or f"customer{n}@example.com",
        content={
            "subject": "Nouvelle collection — Zoë ✨",
            "preheader": "",
            "text": "Bonjour Zoë,\nla collection d'été est là.\n",
            "html": "<p>Bonjour Zoë,</p>\n<p>la collection d'été est là.</p>",
            **content,
        },
        headers=UNSUBSCRIBE,
    )


def _transport(sink: SMTPSink, **config: Any) -> SMTPTransport:
    """One connection unless told otherwise: most tests follow one SMTP conversation."""
    settings: dict[str, Any] = {
        "connections": 1,
        "host": sink.host,
        "port": sink.port,
        "from_address": FROM,
        "security": "none",
        "local_hostname": "test.local",
    }
    return SMTPTransport(settings | config)


def _send(transport: SMTPTransport, messages: list[Outgoing]) -> list[Outcome]:
    try:
        return transport.send_many(messages)
    finally:
        transport.close()


@pytest.fixture
def sink() -> Iterator[SMTPSink]:
    with SMTPSink() as server:
        yield server


def test_email_is_multipart_alternative_text_then_html_in_utf8(sink: SMTPSink) -> None:
    sent_at = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)
    with clock.frozen(sent_at):
        [outcome] = _send(_transport(sink), [_email(1)])

    assert outcome == Accepted(provider_message_id="<01JDELIVERY000000000000001@shop.example>")
    [received] = sink.received
    assert received.mail_from == "news@shop.example"
    assert received.rcpt_tos == ("customer1@example.com",)
    assert received.data.isascii()  # non-ASCII travels encoded, not as 8-bit bytes
    message = received.message()
    assert message["From"] == FROM
    assert message["To"] == "customer1@example.com"
    assert message["Subject"] == "Nouvelle collection — Zoë ✨"
    assert parsedate_to_datetime(message["Date"]) == sent_at
    assert message["Message-ID"] == outcome.provider_message_id
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert text.get_content_charset() == html.get_content_charset() == "utf-8"
    assert text.get_content() == "Bonjour Zoë,\nla collection d'été est là.\n"
    assert html.get_content() == "<p>Bonjour Zoë,</p>\n<p>la collection d'été est là.</p>"


def test_unsubscribe_headers_are_added_verbatim(sink: SMTPSink) -> None:
    _send(_transport(sink, reply_to="care@shop.example"), [_email(1)])

    message = sink.received[0].message()
    assert message["List-Unsubscribe"] == UNSUBSCRIBE["List-Unsubscribe"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Reply-To"] == "care@shop.example"


def test_long_lines_and_leading_dots_survive_the_trip(sink: SMTPSink) -> None:
    html = "<p>" + "x" * 3000 + "</p>\n.\n..leading dots\nFrom the team\n"
    text = "ligne sans fin " * 200 + "\r\nfin\r\n"

    _send(_transport(sink), [_email(1, html=html, text=text)])

    message, data = sink.received[0].message(), sink.received[0].data
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert b"\n" not in data.replace(b"\r\n", b"")  # no bare line feeds
    text_part, html_part = message.iter_parts()
    assert html_part.get_content() == html
    assert text_part.get_content() == text.replace("\r\n", "\n")


def test_non_ascii_recipient_is_sent_with_smtputf8(sink: SMTPSink) -> None:
    [outcome] = _send(_transport(sink), [_email(1, address="zoë@exemple.fr")])

    assert isinstance(outcome, Accepted)
    assert sink.received[0].rcpt_tos == ("zoë@exemple.fr",)
    assert sink.received[0].message()["To"] == "zoë@exemple.fr"


def test_auth_over_starttls_accepts_a_self_signed_certificate_when_told_to() -> None:
    with SMTPSink(auth=("shop", "s3cret"), tls="starttls") as sink:
        transport = _transport(
            sink, security="starttls", verify_tls=False, username="shop", password="s3cret"
        )
        outcomes = _send(transport, [_email(1), _email(2)])

    assert [type(outcome) for outcome in outcomes] == [Accepted, Accepted]
    assert [(r.tls, r.login) for r in sink.received] == [(True, "shop"), (True, "shop")]


def test_verify_tls_refuses_a_self_signed_certificate() -> None:
    with SMTPSink(tls="starttls") as sink:
        outcomes = _send(_transport(sink, security="starttls"), [_email(1), _email(2)])

    assert [type(outcome) for outcome in outcomes] == [TransientError, TransientError]
    assert "CERTIFICATE_VERIFY_FAILED" in str(outcomes[0])
    assert sink.received == []


def test_implicit_tls() -> None:
    with SMTPSink(tls="implicit") as sink:
        [outcome] = _send(_transport(sink, security="tls", verify_tls=False), [_email(1)])

    assert isinstance(outcome, Accepted)
    assert sink.received[0].tls


def test_auth_without_tls_when_the_server_allows_it() -> None:
    with SMTPSink(auth=("shop", "s3cret")) as sink:
        [outcome] = _send(_transport(sink, username="shop", password="s3cret"), [_email(1)])

    assert isinstance(outcome, Accepted)
    assert (sink.received[0].tls, sink.received[0].login) == (False, "shop")


def test_wrong_password_fails_the_batch_as_transient_with_a_clear_detail() -> None:
    with SMTPSink(auth=("shop", "s3cret")) as sink:
        transport = _transport(sink, username="shop", password="wrong")
        outcomes = _send(transport, [_email(1), _email(2), _email(3)])

    assert [type(outcome) for outcome in outcomes] == [TransientError] * 3
    assert "authentication as 'shop'" in str(outcomes[0])
    assert "check the provider's username and password" in str(outcomes[2])
    assert sink.received == []


def test_one_connection_carries_a_batch_and_the_next_one(sink: SMTPSink) -> None:
    transport = _transport(sink, connections=1)
    first = transport.send_many([_email(n) for n in range(50)])
    second = _send(transport, [_email(n) for n in range(50, 60)])

    assert all(isinstance(outcome, Accepted) for outcome in first + second)
    assert (sink.count, sink.connections) == (60, 1)
    assert [r.rcpt_tos[0] for r in sink.received] == [f"customer{n}@example.com" for n in range(60)]


def test_a_batch_is_shared_over_the_connections_and_outcomes_keep_its_order(
    sink: SMTPSink,
) -> None:
    transport = _transport(sink, connections=4)
    first_batch, second_batch = [_email(n) for n in range(50)], [_email(n) for n in range(50, 53)]
    first = transport.send_many(first_batch)
    second = _send(transport, second_batch)

    # Four connections opened for the first batch; the second (three messages) reuses three.
    assert (sink.count, sink.connections) == (53, 4)
    assert sorted(r.rcpt_tos[0] for r in sink.received) == sorted(
        f"customer{n}@example.com" for n in range(53)
    )
    for message, outcome in zip(first_batch + second_batch, first + second, strict=True):
        assert isinstance(outcome, Accepted)
        assert outcome.provider_message_id == f"<{message.delivery_id}@shop.example>"


def test_a_refusal_on_one_connection_lands_on_its_own_message() -> None:
    bad = {f"customer{n}@example.com" for n in (2, 7)}
    with SMTPSink(rcpt_replies=dict.fromkeys(bad, "550 5.1.1 No such user")) as sink:
        messages = [_email(n) for n in range(10)]
        outcomes = _send(_transport(sink, connections=3), messages)

    refused = {
        m.address for m, o in zip(messages, outcomes, strict=True) if not isinstance(o, Accepted)
    }
    assert refused == bad
    assert sink.count == 8


def test_a_new_connection_after_max_messages_per_connection(sink: SMTPSink) -> None:
    transport = _transport(sink, max_messages_per_connection=2, connections=1)
    outcomes = _send(transport, [_email(n) for n in range(5)])

    assert all(isinstance(outcome, Accepted) for outcome in outcomes)
    assert (sink.count, sink.connections) == (5, 3)


def test_refused_recipient_bounces_while_the_rest_is_accepted() -> None:
    bad = "nobody@example.com"
    with SMTPSink(rcpt_replies={bad: "550 5.1.1 No such user"}) as sink:
        outcomes = _send(_transport(sink), [_email(1), _email(2, address=bad), _email(3)])

    accepted, refused, later = outcomes
    assert isinstance(accepted, Accepted)
    assert isinstance(later, Accepted)
    assert isinstance(refused, PermanentError)
    assert refused.bounce
    assert "550 5.1.1 No such user" in refused.detail
    assert [r.rcpt_tos for r in sink.received] == [
        ("customer1@example.com",),
        ("customer3@example.com",),
    ]
    assert sink.connections == 1


def test_relay_denied_is_permanent_but_no_bounce() -> None:
    with SMTPSink(rcpt_replies={"customer1@example.com": "550 5.7.1 Relaying denied"}) as sink:
        [outcome] = _send(_transport(sink), [_email(1)])

    assert isinstance(outcome, PermanentError)
    assert not outcome.bounce


@pytest.mark.parametrize(
    ("rcpt_replies", "data_replies", "expected"),
    [
        ({"customer2@example.com": "451 4.3.0 Try again later"}, {}, TransientError),
        ({}, {"customer2@example.com": "451 4.3.0 Try again later"}, TransientError),
        ({}, {"customer2@example.com": "554 5.6.0 Message rejected"}, PermanentError),
    ],
)
def test_refusals_map_to_outcomes_and_the_batch_goes_on(
    rcpt_replies: Mapping[str, str], data_replies: Mapping[str, str], expected: type[Outcome]
) -> None:
    with SMTPSink(rcpt_replies=rcpt_replies, data_replies=data_replies) as sink:
        outcomes = _send(_transport(sink), [_email(1), _email(2), _email(3)])

    assert [type(outcome) for outcome in outcomes] == [Accepted, expected, Accepted]
    assert not getattr(outcomes[1], "bounce", False)
    assert "customer2@example.com" not in {r.rcpt_tos[0] for r in sink.received}


def test_421_closes_the_connection_and_the_next_message_opens_another() -> None:
    with SMTPSink(data_replies={"customer2@example.com": "421 4.3.2 Shutting down"}) as sink:
        outcomes = _send(_transport(sink), [_email(1), _email(2), _email(3)])

    assert [type(outcome) for outcome in outcomes] == [Accepted, TransientError, Accepted]
    assert sink.connections == 2


def test_server_down_gives_transient_for_every_message() -> None:
    config = {"host": "127.0.0.1", "port": free_port(), "from_address": FROM, "security": "none"}
    outcomes = _send(SMTPTransport(config), [_email(1), _email(2), _email(3)])

    assert [type(outcome) for outcome in outcomes] == [TransientError] * 3
    assert all("cannot connect" in str(outcome) for outcome in outcomes)


def test_a_dropped_connection_is_reopened_once(sink: SMTPSink) -> None:
    transport = _transport(sink)
    first = transport.send_many([_email(1)])
    sink.restart()  # the open connection is gone; the transport only finds out by sending
    second = _send(transport, [_email(2), _email(3)])

    assert [type(outcome) for outcome in first + second] == [Accepted] * 3
    assert (sink.count, sink.connections) == (3, 2)


@pytest.mark.parametrize(
    ("broken", "detail"),
    [
        (_email(2, subject="Injected\r\nBcc: everyone@example.com"), "line break"),
        (replace(_email(2), address=""), "not an email address"),
        (replace(_email(2), content={"subject": "No bodies"}), "'text'"),
        (replace(_email(2), headers={"Content-Type": "text/plain"}), "written by the transport"),
    ],
)
def test_a_message_that_cannot_be_built_fails_alone(
    sink: SMTPSink, broken: Outgoing, detail: str
) -> None:
    outcomes = _send(_transport(sink), [_email(1), broken, _email(3)])

    assert [type(outcome) for outcome in outcomes] == [Accepted, PermanentError, Accepted]
    assert detail in str(outcomes[1])
    assert not getattr(outcomes[1], "bounce", True)
    assert sink.count == 2


@pytest.mark.parametrize(
    "config",
    [
        {"host": "smtp.example.com", "from_address": "no address here"},
        {"host": "smtp.example.com", "from_address": "a@b.example", "username": "only"},
        {"host": "smtp.example.com", "from_address": "a@b.example", "security": "ssl"},
    ],
)
def test_invalid_configs_are_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SMTPTransport(config)
