"""The worker's side of messages against real peers: a real SMTP server (aiosmtpd), a loopback
Twilio API, a local push service decrypting what it gets. Fail-over, retries with backoff,
bounces, rate limits, expiry, leases and concurrent claims, on both databases, with the
clock moved rather than slept on."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient

from regulars.app import create_app
from regulars.config import reset_settings
from regulars.customers import service as customers
from regulars.customers.models import Channel, ConsentStatus, EventType
from regulars.customers.schemas import ConsentUpdate
from regulars.db import Database, session_scope
from regulars.kit import clock, ids
from regulars.kit.clock import FrozenClock
from regulars.messages import (
    dispatch,
    links,
    outcomes,
    providers,
    replies,
    repository,
    service,
    tasks,
    vapid,
)
from regulars.messages.models import DeliveryStatus, MessageChannel, PushSubscription
from regulars.messages.schemas import DeliveryRead, ProviderWrite
from regulars.messages.sending import SendRequest
from tests.messages.conftest import CustomerFactory, TemplateFactory
from tests.messages.push_service import BrowserKeys, PushService, running_push_service
from tests.messages.smtp_sink import SMTPSink, free_port
from tests.messages.twilio_fake import FakeTwilio

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
PUBLIC = "https://news.shop.example"
SENDER = "Regulars Coffee <news@shop.example>"
ADA = "ada@example.com"
PHONE = "+14155552671"


@pytest.fixture
def moved(database: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[FrozenClock]:
    """A frozen clock, an https public URL, and the process-wide dispatch state (rate
    buckets, kept-open transports) fresh for this test."""
    monkeypatch.setenv("REGULARS_PUBLIC_URL", PUBLIC)
    monkeypatch.setenv("REGULARS_EMAIL_FROM", SENDER)
    reset_settings()
    monkeypatch.setattr(dispatch, "limiter", dispatch.RateLimiter())
    dispatch.close_transports()
    with clock.frozen(T0) as frozen:
        yield frozen
    dispatch.close_transports()


@pytest.fixture
def sink() -> Iterator[SMTPSink]:
    with SMTPSink() as server:
        yield server


def save_provider(
    name: str,
    channel: MessageChannel,
    kind: str,
    config: dict[str, Any],
    *,
    priority: int = 0,
    rate_per_second: float | None = None,
) -> None:
    data = ProviderWrite(
        channel=channel,
        kind=kind,
        config=config,
        priority=priority,
        rate_per_second=rate_per_second,
    )
    with session_scope() as session:
        providers.save(session, name, data)


def smtp_provider(name: str, port: int, *, priority: int = 0, **options: Any) -> None:
    config = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": SENDER,
        "local_hostname": "test.local",
        "timeout": 5,
    }
    save_provider(name, MessageChannel.EMAIL, "smtp", config, priority=priority, **options)


def send(customer_id: str, template: str, **fields: Any) -> str:
    with session_scope() as session:
        return service.send(
            session, SendRequest(customer_id=customer_id, template=template, **fields)
        )


def delivery(delivery_id: str) -> DeliveryRead:
    with session_scope(readonly=True) as session:
        found = service.get_delivery(session, delivery_id, with_content=True)
    assert found is not None
    return found


def worker_round(worker_id: str = "w1") -> int:
    return tasks.deliver_due(worker_id, clock.now(), 100)


def message_events(customer_id: str) -> list[str]:
    with session_scope(readonly=True) as session:
        page = customers.list_events(session, customer_id, type=EventType.SYSTEM, limit=100)
    assert page is not None
    return [e.name or "" for e in reversed(page.items) if (e.name or "").startswith("message.")]


def token_of(url: str, prefix: str) -> str:
    assert url.startswith(prefix), url
    return url.removeprefix(prefix)


def parts_of(message: EmailMessage) -> dict[str, str]:
    return {
        part.get_content_type(): str(part.get_content())
        for part in message.iter_parts()
        if isinstance(part, EmailMessage)
    }


# --- email through a real SMTP server ---


def test_marketing_email_reaches_the_smtp_server_with_unsubscribe_headers_and_tracked_links(
    moved: FrozenClock, sink: SMTPSink, customer: CustomerFactory, template: TemplateFactory
) -> None:
    smtp_provider("smtp-main", sink.port)
    ada = customer("ada", email=ADA, first_name="Ada", consents={"email": "subscribed"})
    template("beans_news", "email", category="marketing")

    sent_id = send(ada, "beans_news")
    assert worker_round() == 1

    [received] = sink.received
    assert (received.mail_from, received.rcpt_tos) == ("news@shop.example", (ADA,))
    message = received.message()
    assert message.get_content_type() == "multipart/alternative"
    assert message["Subject"] == "Hello Ada"
    assert message["Message-ID"] == f"<{sent_id}@shop.example>"
    unsubscribe = re.fullmatch(r"<([^>]+)>, <([^>]+)>", message["List-Unsubscribe"])
    assert unsubscribe is not None
    one_click, mailto = unsubscribe.groups()
    token = token_of(one_click, f"{PUBLIC}/m/u/")
    assert links.read(links.UNSUBSCRIBE, token, now=T0) == {"d": sent_id}
    assert mailto == f"mailto:unsubscribe@shop.example?subject=unsubscribe%20{sent_id}"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    parts = parts_of(message)
    assert list(parts) == ["text/plain", "text/html"]
    assert "Hi Ada, our new beans are in." in parts["text/plain"]
    hrefs = re.findall(r"<a\s[^>]*href=\"([^\"]+)\"", parts["text/html"])
    assert len(hrefs) == 1
    click = links.read(links.CLICK, token_of(hrefs[0], f"{PUBLIC}/m/c/"), now=T0)
    assert click == {"d": sent_id, "u": "https://shop.example.com/beans"}
    assert "https://shop.example.com/beans" not in parts["text/html"]
    assert f'src="{PUBLIC}/m/o/' in parts["text/html"]  # the open pixel

    found = delivery(sent_id)
    assert (found.status, found.provider, found.provider_message_id) == (
        DeliveryStatus.SENT,
        "smtp-main",
        f"<{sent_id}@shop.example>",
    )
    assert (found.sent_at, found.attempts, found.reason) == (T0, 1, None)
    assert message_events(ada) == ["message.queued", "message.sent"]


def test_transactional_email_carries_no_list_unsubscribe(
    moved: FrozenClock, sink: SMTPSink, customer: CustomerFactory, template: TemplateFactory
) -> None:
    smtp_provider("smtp-main", sink.port)
    ada = customer("ada", email=ADA, first_name="Ada")
    template("receipt", "email", category="transactional")

    sent_id = send(ada, "receipt")
    worker_round()

    [received] = sink.received
    message = received.message()
    assert message["Message-ID"] == f"<{sent_id}@shop.example>"
    assert message["List-Unsubscribe"] is None
    assert message["List-Unsubscribe-Post"] is None
    assert delivery(sent_id).status == DeliveryStatus.SENT


# --- fail-over ---


def test_unreachable_first_provider_fails_over_to_the_second(
    moved: FrozenClock, sink: SMTPSink, customer: CustomerFactory, template: TemplateFactory
) -> None:
    smtp_provider("smtp-down", free_port(), priority=0)  # nothing listens there
    smtp_provider("smtp-up", sink.port, priority=1)
    ada = customer("ada", email=ADA, first_name="Ada")
    template("receipt", "email")

    sent_id = send(ada, "receipt")
    assert worker_round() == 1

    found = delivery(sent_id)
    assert (found.status, found.provider, found.reason) == (DeliveryStatus.SENT, "smtp-up", None)
    assert found.attempts == 1
    assert [r.rcpt_tos for r in sink.received] == [(ADA,)]


def test_temporary_refusal_fails_over_to_the_second_provider(
    moved: FrozenClock, sink: SMTPSink, customer: CustomerFactory, template: TemplateFactory
) -> None:
    with SMTPSink(rcpt_replies={ADA: "451 4.3.0 Try again later"}) as busy:
        smtp_provider("smtp-busy", busy.port, priority=0)
        smtp_provider("smtp-up", sink.port, priority=1)
        ada = customer("ada", email=ADA, first_name="Ada")
        template("receipt", "email")

        sent_id = send(ada, "receipt")
        worker_round()

        assert busy.received == []
    found = delivery(sent_id)
    assert (found.status, found.provider, found.reason) == (DeliveryStatus.SENT, "smtp-up", None)
    assert len(sink.received) == 1


def test_hard_bounce_is_final_and_suppresses_the_address(
    moved: FrozenClock, sink: SMTPSink, customer: CustomerFactory, template: TemplateFactory
) -> None:
    with SMTPSink(rcpt_replies={ADA: "550 5.1.1 No such user"}) as strict:
        smtp_provider("smtp-strict", strict.port, priority=0)
        smtp_provider("smtp-other", sink.port, priority=1)
        ada = customer("ada", email=ADA, first_name="Ada")
        template("receipt", "email")

        bounced_id = send(ada, "receipt")
        worker_round()

    found = delivery(bounced_id)
    assert (found.status, found.provider) == (DeliveryStatus.BOUNCED, "smtp-strict")
    assert found.reason == "smtp-strict: recipient refused: 550 5.1.1 No such user"
    assert sink.received == []  # not sent through the other provider
    assert message_events(ada) == ["message.queued", "message.bounced"]
    with session_scope(readonly=True) as session:
        assert repository.suppressions_for(session, MessageChannel.EMAIL, [ADA]) == {
            ADA: "hard_bounce"
        }

    next_id = send(ada, "receipt")
    assert delivery(next_id).status == DeliveryStatus.SUPPRESSED
    assert (delivery(next_id).reason or "").startswith("suppressed:hard_bounce: ")
    assert worker_round() == 0


# --- retries ---


def test_provider_down_defers_with_backoff_and_sends_once_it_is_back(
    moved: FrozenClock, customer: CustomerFactory, template: TemplateFactory
) -> None:
    port = free_port()
    smtp_provider("smtp-main", port)
    ada = customer("ada", email=ADA, first_name="Ada")
    template("receipt", "email")

    sent_id = send(ada, "receipt")
    assert worker_round() == 1

    deferred = delivery(sent_id)
    assert (deferred.status, deferred.attempts) == (DeliveryStatus.DEFERRED, 1)
    assert (deferred.reason or "").startswith("retry: smtp-main: cannot connect to SMTP server")
    retry_at = deferred.next_attempt_at
    assert retry_at is not None
    # Attempt 1 backs off 15 s with jitter: between half and all of it.
    assert T0 + timedelta(seconds=7.5) <= retry_at <= T0 + timedelta(seconds=15)

    sink = SMTPSink()
    sink.port = port  # the server comes back where the provider points
    with sink:
        moved.set(retry_at - timedelta(milliseconds=1))
        assert worker_round() == 0
        moved.set(retry_at)
        assert worker_round() == 1
        assert [r.rcpt_tos for r in sink.received] == [(ADA,)]

    found = delivery(sent_id)
    assert (found.status, found.attempts, found.sent_at) == (DeliveryStatus.SENT, 2, retry_at)
    assert found.reason is None
    assert message_events(ada) == ["message.queued", "message.deferred", "message.sent"]


def test_delivery_fails_after_the_last_attempt(
    moved: FrozenClock,
    customer: CustomerFactory,
    template: TemplateFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REGULARS_DELIVERY_MAX_ATTEMPTS", "3")
    reset_settings()
    smtp_provider("smtp-main", free_port())
    ada = customer("ada", email=ADA, first_name="Ada")
    template("receipt", "email")
    sent_id = send(ada, "receipt")

    waits = []
    for _ in range(2):
        before = clock.now()
        assert worker_round() == 1
        retry_at = delivery(sent_id).next_attempt_at
        assert retry_at is not None
        waits.append(retry_at - before)
        moved.set(retry_at)
    assert worker_round() == 1

    assert timedelta(seconds=7.5) <= waits[0] <= timedelta(seconds=15)
    assert timedelta(seconds=15) <= waits[1] <= timedelta(seconds=30)
    found = delivery(sent_id)
    assert (found.status, found.attempts, found.next_attempt_at) == (DeliveryStatus.FAILED, 3, None)
    assert (found.reason or "").startswith("gave up after 3 attempts; last: smtp-main: ")
    assert message_events(ada) == [
        "message.queued",
        "message.deferred",
        "message.deferred",
        "message.failed",
    ]
    moved.advance(timedelta(days=1))
    assert worker_round() == 0


# --- Twilio: a refused number is final, an outage fails over ---


@pytest.fixture
def twilios() -> Iterator[tuple[FakeTwilio, FakeTwilio]]:
    with FakeTwilio() as first, FakeTwilio() as second:
        yield first, second


def twilio_providers(first: FakeTwilio, second: FakeTwilio) -> None:
    save_provider("twilio-a", MessageChannel.SMS, "twilio_sms", first.config(), priority=0)
    save_provider("twilio-b", MessageChannel.SMS, "twilio_sms", second.config(), priority=1)


def test_invalid_number_at_twilio_bounces_without_fail_over(
    moved: FrozenClock,
    twilios: tuple[FakeTwilio, FakeTwilio],
    customer: CustomerFactory,
    template: TemplateFactory,
) -> None:
    first, second = twilios
    twilio_providers(first, second)
    first.refuse(PHONE, 21211)
    ada = customer("ada", phone=PHONE, first_name="Ada")
    template("pickup_ready", "sms")

    bounced_id = send(ada, "pickup_ready")
    worker_round()

    found = delivery(bounced_id)
    assert (found.status, found.provider) == (DeliveryStatus.BOUNCED, "twilio-a")
    assert "twilio 400 error 21211" in (found.reason or "")
    assert [r.status_code for r in first.requests] == [400]
    assert second.requests == []
    assert delivery(send(ada, "pickup_ready")).status == DeliveryStatus.SUPPRESSED


def test_twilio_outage_fails_over_to_the_second_account(
    moved: FrozenClock,
    twilios: tuple[FakeTwilio, FakeTwilio],
    customer: CustomerFactory,
    template: TemplateFactory,
) -> None:
    first, second = twilios
    twilio_providers(first, second)
    first.fail_next(1, 503)
    ada = customer("ada", phone=PHONE, first_name="Ada")
    template("pickup_ready", "sms")

    sent_id = send(ada, "pickup_ready")
    worker_round()

    [sid] = second.messages
    found = delivery(sent_id)
    assert (found.status, found.provider, found.provider_message_id) == (
        DeliveryStatus.SENT,
        "twilio-b",
        sid,
    )
    assert found.reason is None
    assert [r.status_code for r in first.requests] == [503]
    [request] = second.requests
    assert request.form["To"] == PHONE
    assert request.form["Body"] == "Hi Ada, our new beans are in."
    assert request.form["StatusCallback"] == f"{PUBLIC}/webhooks/twilio/twilio-b/status"


# --- in-app ---


def test_inapp_message_is_kept_in_the_customers_inbox(
    moved: FrozenClock, customer: CustomerFactory, template: TemplateFactory
) -> None:
    save_provider("inbox", MessageChannel.INAPP, "inapp", {})
    ada = customer("ada", first_name="Ada")
    template("beans_inapp", "inapp")

    sent_id = send(ada, "beans_inapp")
    assert worker_round() == 1

    with session_scope(readonly=True) as session:
        inbox = service.inbox.page(session, ada, cursor=None, limit=10)
    assert [(i.delivery_id, i.title, i.body, i.link, i.read_at) for i in inbox.items] == [
        (sent_id, "New beans, Ada", "Our new beans are in.", "https://shop.example.com/beans", None)
    ]
    assert inbox.unread_count == 1
    found = delivery(sent_id)
    assert (found.status, found.provider, found.delivered_at) == (
        DeliveryStatus.DELIVERED,
        "inbox",
        T0,
    )
    assert message_events(ada) == ["message.queued", "message.sent", "message.delivered"]


# --- rate limits and expiry ---


def test_rate_limit_sends_at_most_the_rate_per_second_and_holds_the_rest(
    moved: FrozenClock, sink: SMTPSink, customer: CustomerFactory, template: TemplateFactory
) -> None:
    smtp_provider("smtp-main", sink.port, rate_per_second=5)
    ada = customer("ada", email=ADA, first_name="Ada")
    template("receipt", "email")
    sent_ids = [send(ada, "receipt") for _ in range(12)]

    def statuses() -> Counter[tuple[DeliveryStatus, int]]:
        return Counter((delivery(i).status, delivery(i).attempts) for i in sent_ids)

    assert worker_round() == 12  # all claimed, five handed over
    assert statuses() == {(DeliveryStatus.SENT, 1): 5, (DeliveryStatus.QUEUED, 0): 7}
    held = [delivery(i) for i in sent_ids if delivery(i).status == DeliveryStatus.QUEUED]
    assert {d.next_attempt_at for d in held} == {T0 + timedelta(seconds=1)}
    assert worker_round() == 0  # nothing due within the same second
    moved.advance(timedelta(seconds=1))
    worker_round()
    assert statuses() == {(DeliveryStatus.SENT, 1): 10, (DeliveryStatus.QUEUED, 0): 2}
    moved.advance(timedelta(seconds=1))
    worker_round()
    assert statuses() == {(DeliveryStatus.SENT, 1): 12}
    assert len(sink.received) == 12
    # Held back is no event: each message was queued once and sent once.
    assert Counter(message_events(ada)) == {"message.queued": 12, "message.sent": 12}


def test_rate_below_one_per_second_sends_one_message_every_few_seconds(
    moved: FrozenClock, sink: SMTPSink, customer: CustomerFactory, template: TemplateFactory
) -> None:
    smtp_provider("smtp-slow", sink.port, rate_per_second=0.5)  # one every 2 seconds
    ada = customer("ada", email=ADA, first_name="Ada")
    template("receipt", "email")
    for _ in range(3):
        send(ada, "receipt")

    handed_over = []
    for _ in range(5):  # T0, T0 + 1 s, ..., T0 + 4 s
        worker_round()
        handed_over.append(len(sink.received))
        moved.advance(timedelta(seconds=1))

    assert handed_over == [1, 1, 2, 2, 3]


def test_message_expired_when_the_worker_gets_to_it_is_not_sent(
    moved: FrozenClock, sink: SMTPSink, customer: CustomerFactory, template: TemplateFactory
) -> None:
    smtp_provider("smtp-main", sink.port)
    ada = customer("ada", email=ADA, first_name="Ada")
    template("login_code", "email")
    expiring = send(ada, "login_code", expires_at=T0 + timedelta(minutes=5))

    moved.advance(timedelta(minutes=5))
    assert worker_round() == 1

    found = delivery(expiring)
    assert (found.status, found.reason, found.sent_at) == (
        DeliveryStatus.EXPIRED,
        "expired: not sent",
        None,
    )
    assert sink.received == []
    assert message_events(ada) == ["message.queued", "message.expired"]


# --- web push through a local push service ---


@pytest.fixture
def push_service() -> Iterator[PushService]:
    with running_push_service() as service:
        yield service


class Browser(BrowserKeys):
    """A browser that subscribed one customer (a row, as the snippet's POST would make)."""

    def subscribe(self, customer_id: str, endpoint: str) -> None:
        point = self.key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        with session_scope() as session:
            session.add(
                PushSubscription(
                    id=ids.new_id(),
                    customer_id=customer_id,
                    endpoint=endpoint,
                    p256dh=vapid.b64url_encode(point),
                    auth=vapid.b64url_encode(self.auth),
                    user_agent="Firefox",
                    created_at=clock.now(),
                )
            )


@pytest.fixture
def vapid_keys(monkeypatch: pytest.MonkeyPatch) -> vapid.VapidKeys:
    keys = vapid.generate_keys()
    monkeypatch.setenv("REGULARS_VAPID_PRIVATE_KEY", keys.private_key)
    monkeypatch.setenv("REGULARS_VAPID_PUBLIC_KEY", keys.public_key)
    monkeypatch.setenv("REGULARS_VAPID_SUBJECT", "mailto:ops@shop.example")
    reset_settings()
    return keys


def _vapid_claims(authorization: str, public_key: str) -> dict[str, Any]:
    scheme, _, params = authorization.partition(" ")
    assert scheme == "vapid"
    parts = dict(param.strip().split("=", 1) for param in params.split(","))
    assert parts["k"] == public_key
    claims = parts["t"].split(".")[1]
    result: dict[str, Any] = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    return result


def test_web_push_is_encrypted_for_the_browser_with_the_instance_vapid_key(
    moved: FrozenClock,
    vapid_keys: vapid.VapidKeys,
    push_service: PushService,
    customer: CustomerFactory,
    template: TemplateFactory,
) -> None:
    save_provider("webpush", MessageChannel.PUSH, "webpush", {})  # keys from the settings
    ada = customer("ada", first_name="Ada")
    browser = Browser()
    browser.subscribe(ada, push_service.endpoint(201, "ada"))
    template("beans_push", "push")

    sent_id = send(ada, "beans_push")
    assert worker_round() == 1

    [request] = push_service.received
    assert request.path == "/wpush/201/ada"
    assert browser.read(request.body) == {
        "title": "New beans, Ada",
        "body": "Our new beans are in.",
        "icon": "",
        "url": "https://shop.example.com/beans",
        "actions": [],
        "delivery_id": sent_id,
    }
    claims = _vapid_claims(request.headers["authorization"], vapid_keys.public_key)
    assert claims["sub"] == "mailto:ops@shop.example"
    found = delivery(sent_id)
    assert (found.status, found.provider, found.provider_message_id) == (
        DeliveryStatus.SENT,
        "webpush",
        "https://push.example/m/wpush/201/ada",
    )


def test_web_push_answered_gone_removes_the_subscription_and_fails(
    moved: FrozenClock,
    vapid_keys: vapid.VapidKeys,
    push_service: PushService,
    customer: CustomerFactory,
    template: TemplateFactory,
) -> None:
    save_provider("webpush", MessageChannel.PUSH, "webpush", {})
    ada = customer("ada", first_name="Ada")
    bob = customer("bob", first_name="Bob")
    endpoint = push_service.endpoint(410, "ada")
    Browser().subscribe(ada, endpoint)
    Browser().subscribe(bob, push_service.endpoint(201, "bob"))
    template("beans_push", "push")

    failed_id, bob_id = send(ada, "beans_push"), send(bob, "beans_push")
    assert worker_round() == 2

    found = delivery(failed_id)
    assert (found.status, found.provider) == (DeliveryStatus.FAILED, "webpush")
    assert found.reason == "webpush: push service answered 410: subscription says no"
    assert delivery(bob_id).status == DeliveryStatus.SENT
    with session_scope(readonly=True) as session:
        assert repository.get_push_subscription(session, endpoint) is None
        left = repository.push_subscriptions_of(session, [ada, bob])
    assert {c: [s.endpoint for s in found] for c, found in left.items()} == {
        bob: [push_service.endpoint(201, "bob")]
    }
    later = delivery(send(ada, "beans_push"))
    assert later.status == DeliveryStatus.SUPPRESSED
    assert later.reason == "unreachable: the customer has no push subscription"


# --- leases and concurrent workers ---


def test_a_worker_killed_before_recording_is_taken_over_after_its_lease(
    moved: FrozenClock, sink: SMTPSink, customer: CustomerFactory, template: TemplateFactory
) -> None:
    """At-least-once: the first worker handed the message over and died before recording
    it, so the second sends it again, with the same Message-ID for the mailbox to fold."""
    smtp_provider("smtp-main", sink.port)
    ada = customer("ada", email=ADA, first_name="Ada")
    template("receipt", "email")
    sent_id = send(ada, "receipt")

    with session_scope() as session:
        work = dispatch.claim(session, worker_id="w1", now=T0, limit=10)
    assert [c.message.delivery_id for c in work.claimed] == [sent_id]
    lost_results = dispatch.deliver(work, now=T0)  # ... and w1 dies here
    assert delivery(sent_id).status == DeliveryStatus.SENDING

    moved.set(T0 + dispatch.LEASE - timedelta(seconds=1))
    assert worker_round("w2") == 0  # still w1's
    moved.set(T0 + dispatch.LEASE)
    assert worker_round("w2") == 1

    found = delivery(sent_id)
    assert (found.status, found.attempts, found.sent_at) == (
        DeliveryStatus.SENT,
        2,
        T0 + dispatch.LEASE,
    )
    ids_seen = [r.message()["Message-ID"] for r in sink.received]
    assert ids_seen == [f"<{sent_id}@shop.example>"] * 2
    with session_scope() as session:  # w1 comes back from the dead: its lease is gone
        recorded = outcomes.record(session, work, lost_results, worker_id="w1", now=clock.now())
    assert recorded == 0
    assert delivery(sent_id).sent_at == T0 + dispatch.LEASE


def test_workers_claiming_at_once_never_share_a_delivery(
    moved: FrozenClock, customer: CustomerFactory, template: TemplateFactory
) -> None:
    """PostgreSQL claims with SKIP LOCKED, SQLite serialises writers: either way a delivery
    goes to one worker."""
    ada = customer("ada", email=ADA, first_name="Ada")
    template("receipt", "email")
    with session_scope() as session:
        made = service.send_many(session, [SendRequest(ada, "receipt") for _ in range(60)])
    workers = ["w1", "w2", "w3"]
    claimed: dict[str, list[str]] = {w: [] for w in workers}
    start = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def claim_all(worker_id: str) -> None:
        try:
            start.wait(timeout=30)
            while True:
                with session_scope() as session:
                    work = dispatch.claim(session, worker_id=worker_id, now=T0, limit=4)
                if not work.claimed:
                    return
                claimed[worker_id].extend(c.message.delivery_id for c in work.claimed)
        except BaseException as exc:  # reported by the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=claim_all, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    every = [i for found in claimed.values() for i in found]
    assert len(every) == len(set(every)) == 60
    assert set(every) == set(made)
    with session_scope(readonly=True) as session:
        rows = repository.get_deliveries(session, made)
    owners = {i: w for w, found in claimed.items() for i in found}
    assert {i: (d.status, d.locked_by) for i, d in rows.items()} == {
        i: (DeliveryStatus.SENDING, owners[i]) for i in made
    }


# --- what changed while a delivery waited ---


def test_deferred_marketing_sms_is_not_sent_after_the_customer_texted_stop(
    moved: FrozenClock,
    twilios: tuple[FakeTwilio, FakeTwilio],
    customer: CustomerFactory,
    template: TemplateFactory,
) -> None:
    first, second = twilios
    night = datetime(2026, 5, 4, 20, 30, tzinfo=UTC)  # 22:30 in Berlin (CEST)
    morning = datetime(2026, 5, 5, 6, 0, tzinfo=UTC)  # 08:00 in Berlin
    moved.set(night)
    twilio_providers(first, second)
    ada = customer("ada", phone=PHONE, timezone="Europe/Berlin", consents={"sms": "subscribed"})
    template("flash_sale", "sms", category="marketing")
    waiting = send(ada, "flash_sale")
    assert delivery(waiting).status == DeliveryStatus.DEFERRED
    moved.set(night + timedelta(minutes=10))
    with session_scope() as session:
        replies.receive(
            session,
            channel=MessageChannel.SMS,
            phone=PHONE,
            body="STOP",
            message_sid="SM" + "3" * 32,
        )

    moved.set(morning)
    assert worker_round() == 1

    found = delivery(waiting)
    assert found.status == DeliveryStatus.SUPPRESSED
    assert (found.reason or "").startswith("suppressed:stop: ")
    assert first.requests == second.requests == []
    assert message_events(ada) == ["message.deferred", "message.received", "message.suppressed"]


def test_waiting_email_is_not_sent_to_an_address_that_bounced_meanwhile(
    moved: FrozenClock, customer: CustomerFactory, template: TemplateFactory
) -> None:
    with SMTPSink(rcpt_replies={ADA: "550 5.1.1 No such user"}) as strict:
        smtp_provider("smtp-main", strict.port)
        ada = customer("ada", email=ADA, first_name="Ada")
        template("receipt", "email")
        first = send(ada, "receipt")
        later = send(ada, "receipt", not_before=T0 + timedelta(minutes=1))
        assert worker_round() == 1
        assert delivery(first).status == DeliveryStatus.BOUNCED

        moved.advance(timedelta(minutes=1))
        assert worker_round() == 1

    found = delivery(later)
    assert found.status == DeliveryStatus.SUPPRESSED
    assert (found.reason or "").startswith("suppressed:hard_bounce: ")
    assert found.sent_at is None


def test_waiting_marketing_email_is_not_sent_after_an_unsubscribe_but_transactional_is(
    moved: FrozenClock, sink: SMTPSink, customer: CustomerFactory, template: TemplateFactory
) -> None:
    smtp_provider("smtp-main", sink.port)
    ada = customer("ada", email=ADA, first_name="Ada", consents={"email": "subscribed"})
    template("beans_news", "email", category="marketing")
    template("receipt", "email", category="transactional")
    tomorrow = T0 + timedelta(days=1)  # a broadcast's local time, say
    news = send(ada, "beans_news", not_before=tomorrow)
    receipt = send(ada, "receipt", not_before=tomorrow)
    moved.advance(timedelta(hours=2))
    with session_scope() as session:  # in the preference centre, say
        customers.change_consents(
            session,
            ada,
            [ConsentUpdate(channel=Channel.EMAIL, status=ConsentStatus.UNSUBSCRIBED)],
            source="preferences",
        )

    moved.set(tomorrow)
    assert worker_round() == 2

    found = delivery(news)
    assert (found.status, found.sent_at) == (DeliveryStatus.SUPPRESSED, None)
    assert (found.reason or "").startswith("unsubscribed: ")
    assert delivery(receipt).status == DeliveryStatus.SENT
    assert [r.message()["Message-ID"] for r in sink.received] == [f"<{receipt}@shop.example>"]


def test_disabled_providers_hold_messages_instead_of_sending_to_the_sandbox(
    moved: FrozenClock, sink: SMTPSink, customer: CustomerFactory, template: TemplateFactory
) -> None:
    """Switching every provider of a channel off must not make messages vanish as
    "delivered" by the sandbox: they wait, and go once a provider is on again."""
    with session_scope() as session:
        data = ProviderWrite(
            channel=MessageChannel.EMAIL,
            kind="smtp",
            config={
                "host": "127.0.0.1",
                "port": sink.port,
                "security": "none",
                "from_address": SENDER,
            },
            enabled=False,
        )
        providers.save(session, "smtp-off", data)
    ada = customer("ada", email=ADA, first_name="Ada")
    template("receipt", "email")
    sent_id = send(ada, "receipt")

    assert worker_round() == 1
    held = delivery(sent_id)
    assert (held.status, held.provider) == (DeliveryStatus.DEFERRED, None)
    assert held.reason == "retry: every provider of the channel is disabled"
    assert sink.received == []

    smtp_provider("smtp-on", sink.port)
    moved.set(held.next_attempt_at or T0)
    assert worker_round() == 1
    assert (delivery(sent_id).status, delivery(sent_id).provider) == (
        DeliveryStatus.SENT,
        "smtp-on",
    )


def test_a_delivery_that_never_gets_an_outcome_fails_after_the_attempt_limit(
    moved: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
    sink: SMTPSink,
    customer: CustomerFactory,
    template: TemplateFactory,
) -> None:
    """A message that stops its worker every time (claimed, never recorded) must not be
    claimed forever: past REGULARS_DELIVERY_MAX_ATTEMPTS it fails, unsent."""
    monkeypatch.setenv("REGULARS_DELIVERY_MAX_ATTEMPTS", "2")
    reset_settings()
    smtp_provider("smtp-main", sink.port)
    ada = customer("ada", email=ADA, first_name="Ada")
    template("receipt", "email")
    sent_id = send(ada, "receipt")

    for attempt in range(2):  # two workers claim it and die before sending
        moved.set(T0 + attempt * dispatch.LEASE)
        with session_scope() as session:
            claimed = dispatch.claim(session, worker_id=f"dead-{attempt}", now=clock.now(), limit=5)
        assert [c.message.delivery_id for c in claimed.claimed] == [sent_id]

    moved.set(T0 + 2 * dispatch.LEASE)
    assert worker_round() == 1
    found = delivery(sent_id)
    assert found.status == DeliveryStatus.FAILED
    assert found.reason == "gave up after 2 attempts: no outcome was recorded"
    assert sink.received == []


def test_one_click_unsubscribe_round_trip_from_the_received_email(
    moved: FrozenClock, sink: SMTPSink, customer: CustomerFactory, template: TemplateFactory
) -> None:
    """RFC 8058 end to end: the https URL of the List-Unsubscribe header the SMTP server
    received, POSTed as a mailbox provider does (no cookie, no login, the one-click body),
    unsubscribes the recipient from the message's topic at once."""
    smtp_provider("smtp-main", sink.port)
    ada = customer(
        "ada", email=ADA, first_name="Ada", consents={"email": "subscribed", "email:news": True}
    )
    template("beans_news", "email", category="marketing", topic="news")
    sent_id = send(ada, "beans_news")
    assert worker_round() == 1
    header = sink.received[0].message()["List-Unsubscribe"]
    [one_click] = [url for url in re.findall(r"<([^>]+)>", header) if url.startswith("https:")]

    client = TestClient(create_app(with_worker=False))
    answer = client.post(
        one_click,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert answer.status_code == 200, answer.text
    with session_scope(readonly=True) as session:
        consents = customers.list_consents(session, ada) or []
    assert {(c.topic, c.status) for c in consents if c.channel == Channel.EMAIL} == {
        ("", ConsentStatus.SUBSCRIBED),
        ("news", ConsentStatus.UNSUBSCRIBED),
    }
    assert delivery(sent_id).status == DeliveryStatus.UNSUBSCRIBED
    second = send(ada, "beans_news")
    assert delivery(second).status == DeliveryStatus.SUPPRESSED
    assert (delivery(second).reason or "").startswith("topic_unsubscribed")
