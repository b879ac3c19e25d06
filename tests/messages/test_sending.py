"""send() on both databases: the policies in their order (idempotency, expiry, suppression,
consent, reachability, frequency caps, quiet hours across DST), the "auto" channel, the
WhatsApp 24-hour window, locale fallback and strict templates. Deliveries that are due go
through a real worker round (`deliver_due`) on the sandbox, the default transport."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import event as sqlalchemy_event

from regulars.config import reset_settings
from regulars.customers import service as customers
from regulars.customers.models import EventType
from regulars.db import Database, session_scope
from regulars.kit import clock
from regulars.kit.clock import FrozenClock
from regulars.messages import feedback, replies, sending, service, tasks
from regulars.messages.models import Category, DeliveryStatus, MessageChannel
from regulars.messages.schemas import DeliveryRead
from regulars.messages.sending import SendRequest
from tests.messages.conftest import CustomerFactory, TemplateFactory

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)  # a Monday; 11:00 in Berlin (CEST)
PHONE = "+14155552671"
CONTENT_SID = "HX" + "0123456789abcdef" * 2


@pytest.fixture
def moved(database: Database) -> Iterator[FrozenClock]:
    with clock.frozen(T0) as frozen:
        yield frozen


def send(customer_id: str, **fields: Any) -> str:
    with session_scope() as session:
        return service.send(session, SendRequest(customer_id=customer_id, **fields))


def delivery(delivery_id: str) -> DeliveryRead:
    with session_scope(readonly=True) as session:
        found = service.get_delivery(session, delivery_id, with_content=True)
    assert found is not None
    return found


def deliveries_of(customer_id: str) -> list[DeliveryRead]:
    with session_scope(readonly=True) as session:
        page = service.list_deliveries(session, customer=customer_id, limit=100)
    return page.items


def message_events(customer_id: str) -> list[tuple[str, str]]:
    """(event name, delivery id) of the customer's message events, oldest first."""
    with session_scope(readonly=True) as session:
        page = customers.list_events(session, customer_id, type=EventType.SYSTEM, limit=100)
    assert page is not None
    return [
        (e.name or "", str(e.properties.get("delivery_id")))
        for e in reversed(page.items)
        if (e.name or "").startswith("message.")
    ]


def suppress(channel: MessageChannel, address: str, why: str) -> None:
    with session_scope() as session:
        feedback.suppress(session, channel, address, why)


def worker_round() -> int:
    return tasks.deliver_due("w1", clock.now(), 100)


def status_and_reason(delivery_id: str) -> tuple[DeliveryStatus, str]:
    found = delivery(delivery_id)
    return found.status, found.reason or ""


# --- idempotency and the order of the policies ---


def test_same_idempotency_key_answers_the_first_delivery_and_stores_one_row(
    moved: FrozenClock, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", email="ada@example.com", first_name="Ada")
    template("order_shipped", "email")

    first = send(ada, template="order_shipped", idempotency_key="order-42:shipped")
    again = send(ada, template="order_shipped", idempotency_key="order-42:shipped")
    with session_scope() as session:
        batch = service.send_many(
            session,
            [
                SendRequest(customer_id=ada, template="order_shipped", idempotency_key="k2"),
                SendRequest(customer_id=ada, template="order_shipped", idempotency_key="k2"),
            ],
        )

    assert again == first
    assert batch[0] == batch[1] != first
    assert sorted(d.id for d in deliveries_of(ada)) == sorted([first, batch[0]])
    assert message_events(ada) == [("message.queued", first), ("message.queued", batch[0])]


def test_expiry_is_checked_before_suppression(
    moved: FrozenClock, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", email="ada@example.com", first_name="Ada")
    template("order_shipped", "email")
    suppress(MessageChannel.EMAIL, "ada@example.com", "hard_bounce")

    late = send(ada, template="order_shipped", expires_at=T0 - timedelta(seconds=1))

    status, reason = status_and_reason(late)
    assert status == DeliveryStatus.EXPIRED
    assert reason.startswith("expired: ")


@pytest.mark.parametrize(
    "consents", [{}, {"email": "subscribed"}], ids=["without-consent", "with-consent"]
)
def test_suppressed_address_is_refused_whatever_the_consent(
    moved: FrozenClock,
    customer: CustomerFactory,
    template: TemplateFactory,
    consents: dict[str, str],
) -> None:
    ada = customer("ada", email="ada@example.com", first_name="Ada", consents=consents)
    template("news", "email", category="marketing")
    suppress(MessageChannel.EMAIL, "ada@example.com", "complaint")

    refused = send(ada, template="news")

    status, reason = status_and_reason(refused)
    assert status == DeliveryStatus.SUPPRESSED
    assert reason.startswith("suppressed:complaint: ")  # not no_consent: suppression comes first
    assert worker_round() == 0


@pytest.mark.parametrize(
    ("consents", "status", "reason"),
    [
        ({}, DeliveryStatus.SUPPRESSED, "no_consent: "),
        ({"email": "unknown"}, DeliveryStatus.SUPPRESSED, "no_consent: "),
        ({"email": "unsubscribed"}, DeliveryStatus.SUPPRESSED, "unsubscribed: "),
        # A topic's consent never stands in for the channel's own.
        ({"email:beans": "subscribed"}, DeliveryStatus.SUPPRESSED, "no_consent: "),
        (
            {"email": "subscribed", "email:beans": "unsubscribed"},
            DeliveryStatus.SUPPRESSED,
            "topic_unsubscribed: ",
        ),
        # Another topic unsubscribed says nothing of this one.
        ({"email": "subscribed", "email:events": False}, DeliveryStatus.QUEUED, ""),
        ({"email": "subscribed"}, DeliveryStatus.QUEUED, ""),
    ],
)
def test_marketing_needs_the_channel_subscribed_and_the_topic_not_unsubscribed(
    moved: FrozenClock,
    customer: CustomerFactory,
    template: TemplateFactory,
    consents: dict[str, str | bool],
    status: DeliveryStatus,
    reason: str,
) -> None:
    ada = customer("ada", email="ada@example.com", first_name="Ada", consents=consents)
    template("beans_news", "email", category="marketing", topic="beans")

    made = send(ada, template="beans_news")

    found = delivery(made)
    assert found.status == status
    assert (found.reason or "").startswith(reason)
    assert bool(found.reason) == bool(reason)
    assert (found.category, found.topic) == (Category.MARKETING, "beans")


def test_transactional_ignores_marketing_consent_but_not_suppression(
    moved: FrozenClock, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", email="ada@example.com", first_name="Ada", consents={"email": False})
    bob = customer("bob", email="bob@example.com", first_name="Bob", consents={"email": True})
    template("receipt", "email", category="transactional")
    suppress(MessageChannel.EMAIL, "bob@example.com", "hard_bounce")

    to_ada, to_bob = send(ada, template="receipt"), send(bob, template="receipt")

    assert status_and_reason(to_ada) == (DeliveryStatus.QUEUED, "")
    status, reason = status_and_reason(to_bob)
    assert status == DeliveryStatus.SUPPRESSED
    assert reason.startswith("suppressed:hard_bounce: ")
    assert worker_round() == 1
    assert delivery(to_ada).status == DeliveryStatus.DELIVERED  # the sandbox delivers at once


def test_sms_to_a_customer_without_a_phone_is_unreachable(
    moved: FrozenClock, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", email="ada@example.com", first_name="Ada")
    template("pickup_ready", "sms")

    made = send(ada, template="pickup_ready", channel=MessageChannel.SMS)

    found = delivery(made)
    assert (found.status, found.address) == (DeliveryStatus.SUPPRESSED, None)
    assert found.reason == "unreachable: the customer has no phone number"


def test_channel_the_template_has_no_content_for_is_suppressed_with_no_template(
    moved: FrozenClock, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", phone=PHONE, email="ada@example.com", first_name="Ada")
    template("receipt", "email")

    made = send(ada, template="receipt", channel=MessageChannel.SMS)

    assert status_and_reason(made) == (
        DeliveryStatus.SUPPRESSED,
        "no_template: template 'receipt' has no sms content",
    )


def test_inline_content_is_rendered_strictly_without_a_template(
    moved: FrozenClock, customer: CustomerFactory
) -> None:
    ada = customer("ada", phone=PHONE, first_name="Ada")

    made = send(ada, content={"body": "Hi {{ customer.first_name }}"}, channel=MessageChannel.SMS)
    broken = send(ada, content={"body": "Hi {{ event.name }}"}, channel=MessageChannel.SMS)

    found = delivery(made)
    assert (found.status, found.template, found.locale) == (DeliveryStatus.QUEUED, None, "en")
    assert found.content == {"body": "Hi Ada", "encoding": "gsm7", "segments": 1}
    assert delivery(broken).status == DeliveryStatus.FAILED


def test_facts_and_links_are_there_when_a_template_reads_them(
    moved: FrozenClock, customer: CustomerFactory
) -> None:
    ada = customer("ada", phone=PHONE, first_name="Ada")
    body = (
        "{{ facts.orders_count }} orders, {{ facts.event_counts.size }} kinds;"
        " {% for item in facts %}{% if item[0] == 'refunds_count' %}{{ item[1] }}{% endif %}"
        "{% endfor %} refunds; {{ links.preferences }}"
    )

    made = send(ada, content={"body": body}, channel=MessageChannel.SMS)
    missing = send(ada, content={"body": "{{ facts.nothing }}"}, channel=MessageChannel.SMS)
    as_json = send(
        ada, content={"body": "{{ facts | json }}|{{ links | json }}"}, channel=MessageChannel.SMS
    )

    text = sms_body(made)
    assert text.startswith("0 orders, 0 kinds; 0 refunds; http")
    assert "/m/p/" in text
    assert delivery(missing).status == DeliveryStatus.FAILED
    facts_json, links_json = sms_body(as_json).split("|")
    assert orjson.loads(facts_json)["orders_count"] == 0
    assert orjson.loads(facts_json)["event_counts"] == {}
    assert sorted(orjson.loads(links_json)) == ["preferences", "unsubscribe"]


def test_a_batch_reads_each_customers_own_profile_and_facts(
    moved: FrozenClock, customer: CustomerFactory
) -> None:
    ada = customer("ada", phone=PHONE, first_name="Ada", traits={"tier": {"name": "gold"}})
    moved.advance(timedelta(seconds=1, microseconds=250))
    bob = customer("bob", phone="+14155552672", first_name="Bob", traits={"tier": {"name": "tin"}})
    order = {
        "type": "track",
        "userId": "bob",
        "event": "Order Completed",
        "properties": {"order_id": "o-1", "revenue": 42.5},
        "messageId": "order-bob-1",
        "timestamp": clock.now().isoformat(),
    }
    with session_scope() as session:
        assert customers.ingest(session, [order], source="tests").rejected == []
    body = (
        "{{ customer.first_name }} {{ customer.traits.tier.name }} {{ customer.created_at }}"
        " {{ facts.orders_count }} {{ facts.revenue_total }}"
        " {{ facts.event_counts.size }}"
    )
    requests = [
        SendRequest(customer_id=c, content={"body": body}, channel=MessageChannel.SMS)
        for c in (ada, bob)
    ]

    with session_scope() as session:
        made = service.send_many(session, requests)

    assert sms_body(made[0]) == "Ada gold 2026-05-04T09:00:00Z 0 0.0 0"
    assert sms_body(made[1]) == "Bob tin 2026-05-04T09:00:01.000250Z 1 42.5 1"


def test_a_send_whose_templates_print_no_facts_does_not_read_them(
    moved: FrozenClock, customer: CustomerFactory, database: Database
) -> None:
    ada = customer("ada", phone=PHONE, first_name="Ada")
    facts_reads: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if "customer_facts" in statement:
            facts_reads.append(statement)

    sqlalchemy_event.listen(database.writer, "before_cursor_execute", note)
    try:
        send(ada, content={"body": "Hi {{ customer.first_name }}"}, channel=MessageChannel.SMS)
        assert facts_reads == []
        send(ada, content={"body": "{{ facts.orders_count }}"}, channel=MessageChannel.SMS)
        assert len(facts_reads) == 1
    finally:
        sqlalchemy_event.remove(database.writer, "before_cursor_execute", note)


def sms_body(delivery_id: str) -> str:
    content = delivery(delivery_id).content
    assert content is not None
    return str(content["body"])


# --- frequency caps ---


def test_frequency_cap_refuses_the_third_marketing_email_in_seven_days(
    moved: FrozenClock,
    customer: CustomerFactory,
    template: TemplateFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REGULARS_FREQUENCY_CAPS", '["email:2/7d"]')
    reset_settings()
    ada = customer("ada", email="ada@example.com", first_name="Ada", consents={"email": True})
    template("news", "email", category="marketing")
    template("receipt", "email", category="transactional")

    first = send(ada, template="news")
    moved.advance(timedelta(days=3))
    second = send(ada, template="news")
    moved.advance(timedelta(days=3, hours=23, minutes=59))  # 6 days 23:59 after the first
    third = send(ada, template="news")
    receipt = send(ada, template="receipt")
    moved.set(T0 + timedelta(days=7, minutes=1))  # the first left the window; the second not
    fourth = send(ada, template="news")
    fifth = send(ada, template="news")

    assert delivery(first).status == delivery(second).status == DeliveryStatus.QUEUED
    status, reason = status_and_reason(third)
    assert status == DeliveryStatus.SUPPRESSED
    assert reason.startswith("frequency_cap: 2 email messages in the last 7 days")
    assert delivery(receipt).status == DeliveryStatus.QUEUED  # transactional is not capped
    assert delivery(fourth).status == DeliveryStatus.QUEUED
    assert status_and_reason(fifth)[1].startswith("frequency_cap: ")


# --- quiet hours ---


@pytest.mark.parametrize(
    ("sent_at", "allowed_at"),
    [
        # 22:30 CEST (UTC+2) -> 08:00 CEST next morning.
        (datetime(2026, 5, 4, 20, 30, tzinfo=UTC), datetime(2026, 5, 5, 6, 0, tzinfo=UTC)),
        # 22:30 CEST on Saturday; the clocks go back at 03:00 on Sunday -> 08:00 CET (UTC+1).
        (datetime(2026, 10, 24, 20, 30, tzinfo=UTC), datetime(2026, 10, 25, 7, 0, tzinfo=UTC)),
        # 22:30 CET on Saturday; the clocks go forward at 02:00 on Sunday -> 08:00 CEST.
        (datetime(2026, 3, 28, 21, 30, tzinfo=UTC), datetime(2026, 3, 29, 6, 0, tzinfo=UTC)),
    ],
    ids=["summer", "autumn-dst-change", "spring-dst-change"],
)
def test_quiet_hours_defer_marketing_sms_to_local_morning(
    database: Database,
    customer: CustomerFactory,
    template: TemplateFactory,
    sent_at: datetime,
    allowed_at: datetime,
) -> None:
    with clock.frozen(sent_at) as moved:
        ada = customer("ada", phone=PHONE, timezone="Europe/Berlin", consents={"sms": "subscribed"})
        template("flash_sale", "sms", category="marketing")

        made = send(ada, template="flash_sale")

        found = delivery(made)
        assert found.status == DeliveryStatus.DEFERRED
        assert (found.reason or "").startswith("quiet_hours: ")
        assert found.next_attempt_at == allowed_at
        moved.set(allowed_at - timedelta(minutes=1))  # 07:59 in Berlin
        assert worker_round() == 0
        assert delivery(made).status == DeliveryStatus.DEFERRED
        moved.set(allowed_at)
        assert worker_round() == 1
        done = delivery(made)
        assert (done.status, done.sent_at, done.attempts) == (
            DeliveryStatus.DELIVERED,
            allowed_at,
            1,
        )


def test_quiet_hours_let_transactional_sms_through_at_night(
    database: Database, customer: CustomerFactory, template: TemplateFactory
) -> None:
    with clock.frozen(datetime(2026, 5, 4, 20, 30, tzinfo=UTC)):  # 22:30 in Berlin
        ada = customer("ada", phone=PHONE, first_name="Ada", timezone="Europe/Berlin")
        template("pickup_ready", "sms", category="transactional")

        made = send(ada, template="pickup_ready")

        assert status_and_reason(made) == (DeliveryStatus.QUEUED, "")
        assert worker_round() == 1


def test_message_expiring_before_quiet_hours_end_is_expired_at_send(
    database: Database, customer: CustomerFactory, template: TemplateFactory
) -> None:
    night = datetime(2026, 5, 4, 20, 30, tzinfo=UTC)  # 22:30 in Berlin
    with clock.frozen(night) as moved:
        ada = customer("ada", phone=PHONE, timezone="Europe/Berlin", consents={"sms": "subscribed"})
        template("flash_sale", "sms", category="marketing")

        made = send(ada, template="flash_sale", expires_at=night + timedelta(hours=2))

        status, reason = status_and_reason(made)
        assert status == DeliveryStatus.EXPIRED
        assert reason.startswith("expired_in_quiet_hours: ")
        assert "2026-05-05 08:00 CEST" in reason
        moved.set(datetime(2026, 5, 5, 6, 0, tzinfo=UTC))
        assert worker_round() == 0


# --- the "auto" channel ---


@pytest.mark.parametrize(
    ("profile", "channel"),
    [
        ({"phone": PHONE, "email": "ada@example.com"}, MessageChannel.SMS),
        (
            {"phone": PHONE, "email": "ada@example.com", "traits": {"preferred_channel": "email"}},
            MessageChannel.EMAIL,
        ),
        # No template for the preferred channel: the configured order decides.
        (
            {"phone": PHONE, "email": "ada@example.com", "traits": {"preferred_channel": "push"}},
            MessageChannel.SMS,
        ),
        # SMS first in the order, but there is no phone: the next allowed channel.
        ({"email": "ada@example.com"}, MessageChannel.EMAIL),
        # Preferred SMS refused (a suppressed number): the order, past SMS, gives email.
        (
            {
                "phone": "+14155552672",
                "email": "ada@example.com",
                "traits": {"preferred_channel": "sms"},
            },
            MessageChannel.EMAIL,
        ),
    ],
    ids=["order", "preferred", "preferred-unavailable", "unreachable", "preferred-refused"],
)
def test_auto_channel_takes_the_preference_then_the_configured_order(
    moved: FrozenClock,
    customer: CustomerFactory,
    template: TemplateFactory,
    profile: dict[str, Any],
    channel: MessageChannel,
) -> None:
    suppress(MessageChannel.SMS, "+14155552672", "stop")
    ada = customer("ada", first_name="Ada", **profile)
    template("order_update", "email")
    template("order_update", "sms")

    made = send(ada, template="order_update")

    found = delivery(made)
    assert (found.channel, found.status) == (channel, DeliveryStatus.QUEUED)


def test_auto_channel_for_marketing_skips_channels_without_consent(
    moved: FrozenClock, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer(
        "ada",
        phone=PHONE,
        email="ada@example.com",
        first_name="Ada",
        consents={"email": "subscribed"},
        traits={"preferred_channel": "sms"},
    )
    bob = customer("bob", phone="+14155552673", email="bob@example.com", first_name="Bob")
    template("news", "email", category="marketing")
    template("news", "sms", category="marketing")

    to_ada, to_bob = send(ada, template="news"), send(bob, template="news")

    assert (delivery(to_ada).channel, delivery(to_ada).status) == (
        MessageChannel.EMAIL,
        DeliveryStatus.QUEUED,
    )
    # Nothing allowed: the first available channel in the order, refused with its reason.
    assert delivery(to_bob).channel == MessageChannel.SMS
    assert status_and_reason(to_bob)[1].startswith("no_consent: ")


# --- the WhatsApp window ---


def _whatsapp_template(template: TemplateFactory) -> None:
    template(
        "order_ready",
        "whatsapp",
        {
            "en": {
                "body": "Order {{ event.order }} is ready, {{ customer.first_name }}.",
                "template_name": CONTENT_SID,
                "parameters": ["{{ event.order }}"],
            }
        },
    )


def _reply(channel: MessageChannel, body: str, sid: str) -> None:
    with session_scope() as session:
        replies.receive(session, channel=channel, phone=PHONE, body=body, message_sid=sid)


def test_whatsapp_free_text_goes_only_within_24_hours_of_the_customers_message(
    moved: FrozenClock, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", phone=PHONE, first_name="Ada")
    _whatsapp_template(template)
    form = {"template": {"name": CONTENT_SID, "language": "en", "parameters": ["42"]}}

    before = send(ada, template="order_ready", event={"order": "42"})
    _reply(MessageChannel.SMS, "Is it ready?", "SM" + "1" * 32)  # SMS opens no window
    after_sms = send(ada, template="order_ready", event={"order": "42"})
    moved.advance(timedelta(hours=1))
    _reply(MessageChannel.WHATSAPP, "Is it ready?", "SM" + "2" * 32)
    moved.advance(timedelta(hours=23, minutes=59))
    inside = send(ada, template="order_ready", event={"order": "42"})
    moved.advance(timedelta(minutes=2))  # 24 h 1 min after the customer wrote
    outside = send(ada, template="order_ready", event={"order": "42"})

    assert delivery(before).content == form
    assert delivery(after_sms).content == form
    assert delivery(inside).content == {"body": "Order 42 is ready, Ada."}
    assert delivery(outside).content == form
    assert {delivery(d).status for d in (before, after_sms, inside, outside)} == {
        DeliveryStatus.QUEUED
    }


def test_whatsapp_message_deferred_past_the_window_goes_as_the_approved_template(
    moved: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
    customer: CustomerFactory,
    template: TemplateFactory,
) -> None:
    """Quiet hours hold a marketing WhatsApp message until 08:00; free text is decided for
    the moment it goes out, not the moment it was queued."""
    monkeypatch.setenv("REGULARS_FREQUENCY_CAPS", "[]")  # three messages in two days
    reset_settings()
    ada = customer(
        "ada",
        phone=PHONE,
        first_name="Ada",
        timezone="Europe/Berlin",
        consents={"whatsapp": "subscribed"},
    )
    template(
        "order_ready",
        "whatsapp",
        {
            "en": {
                "body": "Order {{ event.order }} is ready, {{ customer.first_name }}.",
                "template_name": CONTENT_SID,
                "parameters": ["{{ event.order }}"],
            }
        },
        category="marketing",
    )
    moved.set(datetime(2026, 5, 4, 18, 0, tzinfo=UTC))  # 20:00 in Berlin
    _reply(MessageChannel.WHATSAPP, "Is it ready?", "SM" + "3" * 32)
    moved.set(datetime(2026, 5, 4, 20, 30, tzinfo=UTC))  # 22:30 in Berlin: quiet hours
    held = send(ada, template="order_ready", event={"order": "42"})
    moved.set(datetime(2026, 5, 5, 17, 0, tzinfo=UTC))  # 19:00: the window is still open
    late = send(ada, template="order_ready", event={"order": "43"})
    moved.set(datetime(2026, 5, 5, 20, 0, tzinfo=UTC))  # 22:00 Berlin, two hours before the
    closing = send(ada, template="order_ready", event={"order": "44"})  # window closes

    assert delivery(held).status == DeliveryStatus.DEFERRED
    assert delivery(held).next_attempt_at == datetime(2026, 5, 5, 6, 0, tzinfo=UTC)
    assert delivery(held).content == {"body": "Order 42 is ready, Ada."}  # 06:00 UTC < 18:00
    assert delivery(late).content == {"body": "Order 43 is ready, Ada."}
    assert delivery(closing).next_attempt_at == datetime(2026, 5, 6, 6, 0, tzinfo=UTC)
    assert delivery(closing).content == {
        "template": {"name": CONTENT_SID, "language": "en", "parameters": ["44"]}
    }


# --- locales and strict templates ---


@pytest.mark.parametrize(
    ("customer_locale", "asked", "locale", "body"),
    [
        ("de-AT", None, "de", "Hallo Ada"),  # the same language
        ("pt-BR", None, "pt-BR", "Olá Ada"),  # exactly
        ("pt-PT", None, "pt-BR", "Olá Ada"),  # the same language, another region
        ("fr-FR", None, "en", "Hello Ada"),  # nothing close: the template's default
        (None, None, "en", "Hello Ada"),
        ("en-GB", "de", "de", "Hallo Ada"),  # asked for in the request
    ],
)
def test_locale_falls_back_to_the_language_then_the_default(
    moved: FrozenClock,
    customer: CustomerFactory,
    template: TemplateFactory,
    customer_locale: str | None,
    asked: str | None,
    locale: str,
    body: str,
) -> None:
    ada = customer("ada", phone=PHONE, first_name="Ada", locale=customer_locale)
    template(
        "hello",
        "sms",
        {
            "en": {"body": "Hello {{ customer.first_name }}"},
            "de": {"body": "Hallo {{ customer.first_name }}"},
            "pt-BR": {"body": "Olá {{ customer.first_name }}"},
        },
    )

    made = send(ada, template="hello", locale=asked)

    found = delivery(made)
    assert (found.locale, found.content["body"] if found.content else None) == (locale, body)


def test_strict_template_with_a_missing_variable_fails_with_the_reason(
    moved: FrozenClock, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", phone=PHONE, first_name="Ada")
    template("shipped", "sms", {"en": {"body": "Order {{ event.order_id }} shipped"}})
    template(
        "shipped_lenient",
        "sms",
        {"en": {"body": "Order {{ event.order_id }} shipped"}},
        strict=False,
    )

    failed = send(ada, template="shipped")
    lenient = send(ada, template="shipped_lenient")
    complete = send(ada, template="shipped", event={"order_id": "A-17"})

    status, reason = status_and_reason(failed)
    assert status == DeliveryStatus.FAILED
    assert reason.startswith("render_failed: ")
    assert "order_id" in reason and "not defined" in reason
    assert delivery(lenient).content == {
        "body": "Order  shipped",
        "encoding": "gsm7",
        "segments": 1,
    }
    assert (delivery(complete).content or {}).get("body") == "Order A-17 shipped"
    assert ("message.failed", failed) in message_events(ada)
    assert worker_round() == 2  # the failed one is never claimed
    assert delivery(failed).status == DeliveryStatus.FAILED


def test_frequency_cap_counts_earlier_messages_of_the_same_batch(
    moved: FrozenClock,
    customer: CustomerFactory,
    template: TemplateFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REGULARS_FREQUENCY_CAPS", '["email:2/7d"]')
    reset_settings()
    ada = customer("ada", email="ada@example.com", first_name="Ada", consents={"email": True})
    bob = customer("bob", email="bob@example.com", first_name="Bob", consents={"email": True})
    template("news", "email", category="marketing")

    with session_scope() as session:
        made = service.send_many(
            session,
            [SendRequest(c, "news") for c in (ada, bob, ada, bob, ada)],
        )

    statuses = [delivery(d).status for d in made]
    assert statuses == [DeliveryStatus.QUEUED] * 4 + [DeliveryStatus.SUPPRESSED]
    assert status_and_reason(made[4])[1].startswith("frequency_cap: 2 email messages")


def test_send_many_keys_answer_the_first_delivery_and_keyless_requests_each_make_one(
    moved: FrozenClock, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer("ada", email="ada@example.com", first_name="Ada")
    template("receipt", "email")
    keyless = SendRequest(customer_id=ada, template="receipt")
    keyed = SendRequest(customer_id=ada, template="receipt", idempotency_key="order-1")

    with session_scope() as session:
        made = service.send_many(session, [keyless, keyed, keyless, keyed])

    assert made[1] == made[3]  # the same key: one delivery
    assert len({made[0], made[1], made[2]}) == 3  # the same request object, no key: two sends
    assert len(deliveries_of(ada)) == 3
    with session_scope() as session:
        again = service.send_many(session, [keyed])
    assert again == [made[1]]
    assert len(deliveries_of(ada)) == 3


def test_a_batch_reads_the_whatsapp_window_and_marketing_history_only_if_it_can_use_them(
    moved: FrozenClock, customer: CustomerFactory, template: TemplateFactory
) -> None:
    ada = customer(
        "ada", phone=PHONE, email="ada@example.com", first_name="Ada", consents={"email": True}
    )
    template("receipt", "email", category="transactional")
    template("news", "email", category="marketing")
    _whatsapp_template(template)
    assert delivery(send(ada, template="news")).status == DeliveryStatus.QUEUED
    _reply(MessageChannel.WHATSAPP, "Is it ready?", "SM" + "3" * 32)

    def gathered(**fields: Any) -> sending.Context:
        with session_scope(readonly=True) as session:
            request = SendRequest(customer_id=ada, **fields)
            return sending.gather(session, [request], now=clock.now())

    receipt = gathered(template="receipt")
    news = gathered(template="news")
    marketing_receipt = gathered(template="receipt", category=Category.MARKETING)
    order_ready = gathered(template="order_ready")  # "auto": the template's one channel

    assert (receipt.recent, receipt.whatsapp_last_inbound) == ({}, {})
    assert (list(news.recent), news.whatsapp_last_inbound) == ([ada], {})
    assert list(marketing_receipt.recent) == [ada]
    assert (order_ready.recent, list(order_ready.whatsapp_last_inbound)) == ({}, [ada])
