"""The messages domain's public verbs: what the API, CLI, tasks and other domains call.

The work lives in sub-modules by concern: `templates`, `sending` (policies, rendering,
queueing), `dispatch` (the worker's side), `broadcasts`, `feedback` (opens, clicks,
unsubscribes, provider callbacks), `replies` (inbound SMS/WhatsApp), `preferences`,
`inbox`, `subscriptions` (web push) and `providers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.customers import service as customers
from regulars.customers.schemas import EventRead
from regulars.errors import NotFound, ValidationFailed
from regulars.jobs import service as jobs
from regulars.kit import clock, ids
from regulars.kit.pagination import decode_cursor, encode_cursor
from regulars.messages import (
    dispatch,
    feedback,
    inbox,
    links,
    outcomes,
    policy,
    preferences,
    providers,
    rendering,
    replies,
    repository,
    sending,
    subscriptions,
    templates,
)
from regulars.messages.broadcasts import cancel as cancel_broadcast
from regulars.messages.broadcasts import create as create_broadcast
from regulars.messages.broadcasts import expand as expand_broadcast
from regulars.messages.broadcasts import get as get_broadcast
from regulars.messages.broadcasts import list_recent as list_broadcasts
from regulars.messages.channels import TRANSPORTS
from regulars.messages.channels.base import (
    Accepted,
    Outgoing,
    PermanentError,
    TransientError,
)
from regulars.messages.models import (
    Category,
    Delivery,
    DeliveryStatus,
    MessageChannel,
    Suppression,
)
from regulars.messages.schemas import (
    DeliveryPage,
    DeliveryRead,
    MessageCreate,
    PreviewRead,
    PreviewRequest,
    PushSubscriptionRead,
    VerdictRead,
)
from regulars.messages.sending import SendRequest, send, send_many
from regulars.messages.sms_text import measure_sms

__all__ = [
    "SendRequest",
    "cancel_broadcast",
    "claim_queued_deliveries",
    "create_broadcast",
    "deliver_round",
    "expand_broadcast",
    "feedback",
    "get_broadcast",
    "get_delivery",
    "hand_over_deliveries",
    "inbox",
    "links",
    "list_broadcasts",
    "list_deliveries",
    "preferences",
    "preview",
    "providers",
    "replies",
    "send",
    "send_many",
    "send_message",
    "subscriptions",
    "templates",
]


def follow_merge(session: Session, customer_id: str, survivor_id: str | None) -> None:
    """A profile merged into another takes its messages along, so an unsubscribe link sent
    before the merge still works; an erased profile's messages go with it (cascade)."""
    if survivor_id is not None:
        repository.move_customer_rows(session, merged_id=customer_id, survivor_id=survivor_id)


customers.on_removal(follow_merge)


def exported(session: Session, customer_id: str) -> dict[str, list[BaseModel]]:
    """For the GDPR export: every message sent (with what it said), the inbox, the
    browsers subscribed to push, a pause."""
    held: dict[str, list[BaseModel]] = {}
    deliveries = repository.list_deliveries(
        session,
        customer_id=customer_id,
        channel=None,
        status=None,
        broadcast_id=None,
        provider=None,
        before_id=None,
        limit=1_000_000,
    )
    held["deliveries"] = [delivery_read(d, with_content=True) for d in deliveries]
    held["inbox"] = list(inbox.page(session, customer_id, cursor=None, limit=1_000_000).items)
    held["push_subscriptions"] = [
        PushSubscriptionRead(endpoint=s.endpoint, user_agent=s.user_agent, created_at=s.created_at)
        for s in repository.push_subscriptions_of(session, [customer_id]).get(customer_id, [])
    ]
    return held


customers.on_export(exported)


def deliver_round(session: Session, *, worker_id: str, now: datetime) -> int:
    """One worker round in the caller's session (the demo, simulations): claim the due
    deliveries, hand them to providers, record the outcomes. Answers how many it handled."""
    work = dispatch.claim(
        session, worker_id=worker_id, now=now, limit=get_settings().dispatch_batch_size
    )
    if work.claimed:
        outcomes.record(
            session, work, dispatch.deliver(work, now=now), worker_id=worker_id, now=now
        )
    return len(work.claimed)


def claim_queued_deliveries(
    session: Session, *, worker_id: str, now: datetime
) -> dispatch.Round | None:
    """In a worker's drain of another queue (a journey step), in that drain's transaction:
    claim the deliveries due now for the deliveries drain that follows in the same round
    of the same worker (`hand_over_deliveries` once committed), when this transaction
    queued some. A journey's message then reaches its provider without a claim
    transaction of its own (on SQLite, a wait fewer for the one writer) or a round more."""
    queued = jobs.queued_in(session, sending.DELIVERIES_QUEUE)
    if not queued or not jobs.drained_later(sending.DELIVERIES_QUEUE, worker_id):
        return None
    # The messages were queued at the clock's now, which may be past the round's start.
    limit = get_settings().dispatch_batch_size
    work = dispatch.claim(session, worker_id=worker_id, now=max(now, clock.now()), limit=limit)
    if len(work.claimed) < limit:  # all that is due is claimed: no need to look again
        jobs.forget_queued(session, sending.DELIVERIES_QUEUE)
    return work if work.claimed else None


def hand_over_deliveries(worker_id: str, work: dispatch.Round) -> None:
    """Deliveries claimed by `claim_queued_deliveries`, committed: to the worker's next
    deliveries drain (messages.tasks.deliver_due)."""
    jobs.hand_over(sending.DELIVERIES_QUEUE, worker_id, work)


def require_customer(session: Session, reference: str) -> str:
    customer_id = customers.find_customer(session, reference)
    if customer_id is None:
        raise NotFound(f"no customer {reference!r}", details={"customer": reference})
    return customer_id


def send_message(session: Session, data: MessageCreate) -> DeliveryRead:
    """POST /api/messages: one message, by template or inline content."""
    if (data.template is None) == (data.content is None):
        raise ValidationFailed("give either template or content")
    channel = None if data.channel == "auto" else MessageChannel(data.channel)
    if data.content is not None:
        if channel is None:
            raise ValidationFailed("inline content needs a channel (not auto)")
        _check_inline(channel, data.content)
    elif not templates.by_key(session, data.template or ""):
        raise NotFound(f"no template {data.template!r}", details={"template": data.template})
    expires_at = data.expires_at
    if data.expires_in_seconds is not None:
        expires_at = clock.now() + timedelta(seconds=data.expires_in_seconds)
    delivery_id = send(
        session,
        SendRequest(
            customer_id=require_customer(session, data.customer),
            template=data.template,
            content=data.content,
            channel=channel,
            category=data.category,
            topic=data.topic,
            idempotency_key=data.idempotency_key,
            expires_at=expires_at,
            event=data.event,
            locale=data.locale,
        ),
    )
    found = get_delivery(session, delivery_id, with_content=False)
    assert found is not None
    return found


def _check_inline(channel: MessageChannel, content: dict[str, object]) -> None:
    """Inline content is checked as a template save is (fields, Liquid syntax, MJML)."""
    problems = rendering.check(channel, content)
    if problems:
        first = problems[0]
        raise ValidationFailed(
            f"content.{first.field}: {first.message}",
            code="invalid_template",
            details=[
                {"field": p.field, "message": p.message, "line": p.line, "column": p.column}
                for p in problems
            ],
        )


def delivery_read(delivery: Delivery, *, with_content: bool) -> DeliveryRead:
    return DeliveryRead(
        id=delivery.id,
        customer_id=delivery.customer_id,
        channel=delivery.channel,
        category=delivery.category,
        topic=delivery.topic,
        template=delivery.template_key,
        template_version=delivery.template_version,
        locale=delivery.locale,
        broadcast_id=delivery.broadcast_id,
        status=delivery.status,
        reason=delivery.reason,
        address=delivery.address,
        provider=delivery.provider,
        provider_message_id=delivery.provider_message_id,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        expires_at=delivery.expires_at,
        created_at=delivery.created_at,
        updated_at=delivery.updated_at,
        sent_at=delivery.sent_at,
        delivered_at=delivery.delivered_at,
        opened_at=delivery.opened_at,
        clicked_at=delivery.clicked_at,
        content=dict(delivery.content) if with_content else None,
    )


def get_delivery(session: Session, delivery_id: str, *, with_content: bool) -> DeliveryRead | None:
    delivery = repository.get_delivery(session, delivery_id)
    return None if delivery is None else delivery_read(delivery, with_content=with_content)


def list_deliveries(
    session: Session,
    *,
    customer: str | None = None,
    channel: MessageChannel | None = None,
    status: DeliveryStatus | None = None,
    broadcast_id: str | None = None,
    provider: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
    with_content: bool = False,
    template: str | None = None,
) -> DeliveryPage:
    before = None
    if cursor is not None:
        (before,) = decode_cursor(cursor, 1)
        if not isinstance(before, str):
            raise ValidationFailed("cursor is not valid: pass next_cursor back unchanged")
    rows = repository.list_deliveries(
        session,
        customer_id=require_customer(session, customer) if customer else None,
        channel=channel,
        status=status,
        broadcast_id=broadcast_id,
        provider=provider,
        before_id=before,
        limit=limit + 1,
        template_key=template,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return DeliveryPage(
        items=[delivery_read(d, with_content=with_content) for d in rows],
        next_cursor=encode_cursor(rows[-1].id) if more else None,
    )


def preview(session: Session, key: str, data: PreviewRequest) -> PreviewRead:
    """Render a template for one customer, with the policy verdict beside it; nothing is
    stored or sent."""
    customer_id = require_customer(session, data.customer)
    if not templates.by_key(session, key):
        raise NotFound(f"no template {key!r}", details={"template": key})
    request = SendRequest(
        customer_id=customer_id,
        template=key,
        channel=None if data.channel == "auto" else MessageChannel(data.channel),
        event=data.event,
        locale=data.locale,
    )
    context = sending.gather(session, [request], now=clock.now())
    planned = sending.plan(request, context, render_refused=True)
    row, verdict = planned.row, planned.verdict
    return PreviewRead(
        template=key,
        channel=row["channel"],
        locale=row["locale"] or "",
        version=row["template_version"] or 0,
        content=row["content"] if planned.error is None and row["content"] else None,
        error=planned.error,
        verdict=VerdictRead(
            decision=_DECISIONS[verdict.kind],
            reason=verdict.reason,
            message=verdict.message,
            at=verdict.at,
        ),
    )


_DECISIONS: dict[policy.VerdictKind, Literal["send", "defer", "refuse"]] = {
    policy.VerdictKind.SEND: "send",
    policy.VerdictKind.DEFER: "defer",
    policy.VerdictKind.REFUSE: "refuse",
}


def list_suppressions(session: Session, *, limit: int = 100) -> list[Suppression]:
    """The newest suppressed addresses (`feedback.unsuppress` lifts one)."""
    return repository.list_suppressions(session, limit=limit)


# --- for the dashboard: a draft's preview, a delivery's events, a provider's test send ---


def preview_draft(
    session: Session,
    channel: MessageChannel,
    source: dict[str, Any],
    *,
    customer: str,
    locale: str | None = None,
    category: Category | None = None,
    event: Mapping[str, Any] | None = None,
) -> PreviewRead:
    """Render unsaved content (one locale's fields) for one customer, with the policy
    verdict, as the template preview does; content with problems is refused (422) with the
    field, line and column of each, as a template save is. `event` stands in for the
    triggering event's properties (`{{ event.order_id }}`). Nothing is stored or sent."""
    _check_inline(channel, source)
    request = SendRequest(
        customer_id=require_customer(session, customer),
        content=source,
        channel=channel,
        category=category,
        locale=locale,
        event=dict(event or {}),
    )
    context = sending.gather(session, [request], now=clock.now())
    planned = sending.plan(request, context, render_refused=True)
    row, verdict = planned.row, planned.verdict
    return PreviewRead(
        template="",
        channel=row["channel"],
        locale=row["locale"] or "",
        version=0,
        content=row["content"] if planned.error is None and row["content"] else None,
        error=planned.error,
        verdict=VerdictRead(
            decision=_DECISIONS[verdict.kind],
            reason=verdict.reason,
            message=verdict.message,
            at=verdict.at,
        ),
    )


def delivery_events(session: Session, delivery: DeliveryRead) -> list[EventRead]:
    """The timeline events of one delivery (message.queued, .sent, .delivered, ...), oldest
    first: one indexed look-up per status name on its customer's events."""
    found: list[EventRead] = []
    since = delivery.created_at - timedelta(seconds=1)
    for status in DeliveryStatus:
        for _customer, event in customers.recent_events(
            session, [delivery.customer_id], name=f"message.{status.value}", since=since
        ):
            if event.properties.get("delivery_id") == delivery.id:
                found.append(event)
    return sorted(found, key=lambda event: (event.timestamp, event.id))


@dataclass(frozen=True, slots=True)
class ProviderCheck:
    """What a provider answered to one test message."""

    provider: str
    channel: MessageChannel
    address: str
    ok: bool
    outcome: str


_TEST_TEXT = "A test message from regulars: this provider works."


def check_provider(session: Session, name: str, *, recipient: str) -> ProviderCheck:
    """Send one fixed test message through provider `name` to `recipient` (an email address,
    a phone number, a push endpoint, a customer id or a webhook URL, as the channel takes);
    nothing is stored. Answers what the provider said."""
    provider = providers.get(session, name)
    if provider is None:
        raise NotFound(f"no provider {name!r}", details={"provider": name})
    if not recipient.strip():
        raise ValidationFailed("give a recipient for the test message")
    channel = MessageChannel(provider.channel)
    message = Outgoing(
        delivery_id=ids.new_id(),
        channel=channel,
        category=Category.TRANSACTIONAL,
        customer_id="",
        address=recipient.strip(),
        content=_test_content(channel, recipient.strip()),
    )
    transport = TRANSPORTS[provider.kind](
        providers.effective_config(name, provider.kind, provider.config)
    )
    try:
        outcome = transport.send_many([message])[0]
    except Exception as exc:  # a bad config or an unreachable host: shown, not raised
        outcome = TransientError(f"{type(exc).__name__}: {exc}")
    finally:
        transport.close()
    if isinstance(outcome, Accepted):
        said = f"accepted ({outcome.status.value}), id {outcome.provider_message_id or '-'}"
        return ProviderCheck(name, channel, message.address, True, said)
    kind = "refused" if isinstance(outcome, PermanentError) else "failed for now"
    return ProviderCheck(name, channel, message.address, False, f"{kind}: {outcome.detail}")


def _test_content(channel: MessageChannel, recipient: str) -> dict[str, Any]:
    if channel == MessageChannel.EMAIL:
        html = f"<html><body><p>{_TEST_TEXT}</p></body></html>"
        return {"subject": "regulars test", "preheader": "", "html": html, "text": _TEST_TEXT}
    if channel == MessageChannel.SMS:
        measure = measure_sms(_TEST_TEXT)
        return {"body": _TEST_TEXT, "encoding": measure.encoding, "segments": measure.segments}
    if channel == MessageChannel.PUSH:
        return {"title": "regulars test", "body": _TEST_TEXT, "icon": "", "url": "", "actions": []}
    if channel == MessageChannel.INAPP:
        return {"title": "regulars test", "body": _TEST_TEXT, "link": ""}
    if channel == MessageChannel.WEBHOOK:
        return {"url": recipient, "payload": {"test": True, "message": _TEST_TEXT}}
    return {"body": _TEST_TEXT}
