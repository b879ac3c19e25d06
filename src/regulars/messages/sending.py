"""send(): the one way a message leaves regulars (the API, broadcasts and journeys call it).

A batch of requests becomes delivery rows in a fixed handful of queries: read everything the
policies need for all customers at once, then per request pick the channel, apply the
policies in order, render, and insert. A refused message is still a row (status suppressed,
with the reason) and an event on the customer's timeline: every message's fate is known.
The worker (messages/dispatch.py) carries the queued rows to the providers.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.customers import service as customers
from regulars.customers.schemas import FactsRead
from regulars.jobs import service as jobs
from regulars.kit import clock, ids
from regulars.messages import links, policy, rendering, repository, templates
from regulars.messages.models import (
    Category,
    DeliveryStatus,
    MessageChannel,
    PushSubscription,
    Template,
    TemplateVersion,
)
from regulars.messages.templates import CurrentTemplates

WHATSAPP_WINDOW = timedelta(hours=24)
INBOUND_EVENT = "message.received"
MAX_BATCH = 5000

DELIVERIES_QUEUE = "messages.deliveries"  # the worker's queue (tasks.deliver_due)


@dataclass(frozen=True, slots=True)
class SendRequest:
    """One message to one customer. `channel` None is "auto"; `content` (inline, the
    channel's template fields) replaces `template`; `not_before` holds it back (broadcast
    local time and throttle)."""

    customer_id: str
    template: str | None = None
    content: Mapping[str, Any] | None = None
    channel: MessageChannel | None = None
    category: Category | None = None
    topic: str | None = None
    idempotency_key: str | None = None
    expires_at: datetime | None = None
    event: Mapping[str, Any] = field(default_factory=dict)
    locale: str | None = None
    broadcast_id: str | None = None
    not_before: datetime | None = None


@dataclass(slots=True)
class Plan:
    """What send decided for one request: the row to insert, and the verdict behind it."""

    row: dict[str, Any]
    verdict: policy.Verdict
    error: str | None = None


@dataclass(slots=True)
class Context:
    """Everything the policies and rendering read, loaded once for a whole batch."""

    now: datetime
    customers: dict[str, customers.Recipient]
    facts: _BatchFacts
    templates: CurrentTemplates
    suppressions: dict[tuple[MessageChannel, str], str]
    pauses: dict[str, datetime]
    recent: dict[str, list[tuple[MessageChannel, datetime]]]
    push: dict[str, list[PushSubscription]]
    whatsapp_last_inbound: dict[str, datetime]
    caps: list[policy.Cap]
    quiet: policy.QuietHours


def send(session: Session, request: SendRequest) -> str:
    """Queue one message (or record why it may not go); answers the delivery id. The same
    idempotency key answers the first delivery's id, and nothing new is sent."""
    return send_many(session, [request])[0]


def send_many(session: Session, requests: Sequence[SendRequest]) -> list[str]:
    """Queue many messages at once; answers one delivery id per request, in order. A key
    already used (before, or earlier in the batch) answers that delivery's id."""
    if len(requests) > MAX_BATCH:
        raise ValueError(f"send at most {MAX_BATCH} messages per call")
    keys = [r.idempotency_key for r in requests if r.idempotency_key]
    known = repository.delivery_ids_by_keys(session, keys) if keys else {}
    fresh: dict[int, SendRequest] = {}  # by position: the first request of each new key
    batch_keys: set[str] = set()
    for index, request in enumerate(requests):
        key = request.idempotency_key
        if not key or (key not in known and key not in batch_keys):
            fresh[index] = request
            batch_keys.update([key] if key else [])
    context = gather(session, list(fresh.values()), now=clock.now())
    plans: dict[int, Plan] = {}
    for index, request in fresh.items():
        plans[index] = plan(request, context)
        _count_towards_caps(context, plans[index].row)
    inserted = repository.insert_deliveries(session, [p.row for p in plans.values()])
    stored = [p.row for p in plans.values() if p.row["id"] in inserted]
    # Their keys carry the ids of deliveries made above, so none can be stored yet.
    customers.record_system_events(session, [timeline_event(row) for row in stored], new_keys=True)
    if any(_due_now(row, context.now) for row in stored):
        jobs.wake_after_commit(session, queue=DELIVERIES_QUEUE)
    for p in plans.values():
        if p.row["idempotency_key"] and p.row["id"] in inserted:
            known[p.row["idempotency_key"]] = p.row["id"]
    # A key taken meanwhile by another transaction answers that transaction's delivery.
    lost = [p.row["idempotency_key"] for p in plans.values() if p.row["id"] not in inserted]
    known.update(repository.delivery_ids_by_keys(session, lost) if lost else {})
    return [
        known[r.idempotency_key] if r.idempotency_key else plans[index].row["id"]
        for index, r in enumerate(requests)
    ]


def _count_towards_caps(context: Context, row: Mapping[str, Any]) -> None:
    """A marketing message this batch lets through counts towards the frequency caps of the
    requests after it (the database only knows of earlier batches)."""
    going = row["status"] in (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)
    if context.caps and going and row["category"] == Category.MARKETING:
        recent = context.recent.setdefault(row["customer_id"], [])
        recent.append((MessageChannel(row["channel"]), row["created_at"]))


def timeline_event(row: Mapping[str, Any]) -> customers.SystemEvent:
    status = DeliveryStatus(row["status"])
    properties: dict[str, Any] = {
        "delivery_id": row["id"],
        "channel": str(row["channel"]),
        "category": str(row["category"]),
        "template": row.get("template_key"),
    }
    if row.get("reason"):
        properties["reason"] = row["reason"]
    return customers.SystemEvent(
        customer_id=row["customer_id"],
        name=f"message.{status.value}",
        properties=properties,
        timestamp=row["updated_at"],
        key=f"{row['id']}:{status.value}",
    )


# --- gathering: a fixed number of queries per batch ---


def _due_now(row: Mapping[str, Any], now: datetime) -> bool:
    due: datetime | None = row["next_attempt_at"]
    return row["status"] == DeliveryStatus.QUEUED and due is not None and due <= now


def gather(session: Session, requests: Sequence[SendRequest], *, now: datetime) -> Context:
    """Everything `plan` reads, for the channels and categories the batch can end on: a
    journey's transactional email does not read push subscriptions, WhatsApp windows or
    recent marketing (each a query, per step of every run)."""
    settings = get_settings()
    customer_ids = sorted({r.customer_id for r in requests})
    found = customers.recipients(session, customer_ids)
    found_templates = templates.current_by_key(
        session, {r.template for r in requests if r.template}
    )
    channels = _channels_in_play(requests, found_templates)
    caps = policy.parse_caps(settings.frequency_caps)
    longest = max((cap.window for cap in caps), default=timedelta(0))
    recent: dict[str, list[tuple[MessageChannel, datetime]]] = {}
    if caps and _may_be_marketing(requests, found_templates):
        for customer_id, channel, at in repository.recent_marketing(
            session, customer_ids, since=now - longest
        ):
            recent.setdefault(customer_id, []).append((channel, at))
    return Context(
        now=now,
        customers=found,
        facts=_BatchFacts(session, customer_ids),
        templates=found_templates,
        suppressions=_suppressions(session, found.values(), channels),
        pauses=repository.pauses_of(session, customer_ids),
        recent=recent,
        push=(
            repository.push_subscriptions_of(session, customer_ids)
            if MessageChannel.PUSH in channels
            else {}
        ),
        whatsapp_last_inbound=(
            _whatsapp_last_inbound(session, customer_ids, now=now)
            if MessageChannel.WHATSAPP in channels
            else {}
        ),
        caps=caps,
        quiet=quiet_hours(),
    )


def _channels_of(request: SendRequest, found_templates: CurrentTemplates) -> list[MessageChannel]:
    """The channels a request can be planned on: the asked one, or for "auto" its
    template's (`_available_channels`; with none, the request is refused whatever it reads)."""
    if request.channel is not None:
        return [request.channel]
    if request.content is not None:
        return []
    return list(found_templates.get(request.template or "", {}))


def _channels_in_play(
    requests: Sequence[SendRequest], found_templates: CurrentTemplates
) -> set[MessageChannel]:
    return {channel for r in requests for channel in _channels_of(r, found_templates)}


def _may_be_marketing(requests: Sequence[SendRequest], found_templates: CurrentTemplates) -> bool:
    """Could any request be sent as marketing (the only category frequency caps count)?"""
    for request in requests:
        if request.category is not None:
            if request.category == Category.MARKETING:
                return True
            continue
        by_channel = found_templates.get(request.template or "", {})
        for channel in _channels_of(request, found_templates):
            template = by_channel.get(channel)
            if template is not None and template[0].category == Category.MARKETING:
                return True
    return False


def quiet_hours() -> policy.QuietHours:
    settings = get_settings()
    return policy.QuietHours(
        start=settings.quiet_hours_start,
        end=settings.quiet_hours_end,
        channels=frozenset(MessageChannel(c) for c in settings.quiet_hours_channels),
        transactional=settings.quiet_hours_transactional,
    )


def _suppressions(
    session: Session,
    people: Iterable[customers.Recipient],
    channels: Collection[MessageChannel],
) -> dict[tuple[MessageChannel, str], str]:
    people = list(people)
    found: dict[tuple[MessageChannel, str], str] = {}
    emails = [p.email for p in people if p.email]
    phones = [p.phone for p in people if p.phone]
    for channel, addresses in (
        (MessageChannel.EMAIL, emails),
        (MessageChannel.SMS, phones),
        (MessageChannel.WHATSAPP, phones),
    ):
        if addresses and channel in channels:
            for address, reason in repository.suppressions_for(session, channel, addresses).items():
                found[(channel, address)] = reason
    return found


def _whatsapp_last_inbound(
    session: Session, customer_ids: Sequence[str], *, now: datetime
) -> dict[str, datetime]:
    """When each customer last wrote to us on WhatsApp, within the last 24 hours: free text
    is allowed until 24 hours after it."""
    inbound = customers.recent_events(
        session, customer_ids, name=INBOUND_EVENT, since=now - WHATSAPP_WINDOW
    )
    last: dict[str, datetime] = {}
    for customer_id, event in inbound:
        if event.properties.get("channel") == "whatsapp":
            last[customer_id] = max(event.timestamp, last.get(customer_id, event.timestamp))
    return last


# --- planning one request ---


def address_of(
    channel: MessageChannel, customer: customers.Recipient, push: Sequence[PushSubscription]
) -> str | None:
    if channel == MessageChannel.EMAIL:
        return customer.email
    if channel in (MessageChannel.SMS, MessageChannel.WHATSAPP):
        return customer.phone
    if channel == MessageChannel.PUSH:
        return push[0].endpoint if push else None
    return customer.id  # in-app and webhook reach the customer by id


def policy_input(
    request: SendRequest,
    context: Context,
    *,
    channel: MessageChannel,
    category: Category,
    topic: str,
) -> policy.PolicyInput:
    customer = context.customers[request.customer_id]
    address = address_of(channel, customer, context.push.get(customer.id, []))
    at = max(context.now, request.not_before or context.now)
    return policy.PolicyInput(
        category=category,
        channel=channel,
        topic=topic,
        now=at,
        expires_at=request.expires_at,
        timezone=customer.timezone,
        consents=customer.consents,
        suppressed_reason=context.suppressions.get((channel, address)) if address else None,
        address=address,
        paused_until=context.pauses.get(customer.id),
        recent_marketing=context.recent.get(customer.id, []),
        caps=context.caps,
        quiet=context.quiet,
        default_timezone=get_settings().default_timezone,
    )


def plan(request: SendRequest, context: Context, *, render_refused: bool = False) -> Plan:
    """Decide one request: channel, policies in order, then rendering (a preview renders
    what the policies refuse too)."""
    if request.customer_id not in context.customers:
        raise ValueError(f"customer {request.customer_id} was not loaded")
    available = _available_channels(request, context)
    option = _choose(request, context, available)
    verdict = option.verdict
    if option.channel not in available:
        verdict = policy.Verdict(
            kind=policy.VerdictKind.REFUSE,
            reason="no_template",
            message=f"template {request.template!r} has no {option.channel.value} content",
            at=None,
        )
    row = _row(
        request, context, channel=option.channel, category=option.category, topic=option.topic
    )
    if option.template is not None:
        row["template_key"] = option.template[0].key
        row["template_version"] = option.template[1].version
    result = Plan(row=row, verdict=verdict)
    _apply_verdict(result, request, context, option.template, render_refused=render_refused)
    return result


@dataclass(frozen=True, slots=True)
class _Option:
    """One channel for a request: its template, category and topic, and the verdict."""

    channel: MessageChannel
    template: tuple[Template, TemplateVersion] | None
    category: Category
    topic: str
    verdict: policy.Verdict


def _option(request: SendRequest, context: Context, channel: MessageChannel) -> _Option:
    template = context.templates.get(request.template or "", {}).get(channel)
    category = request.category or (template[0].category if template else None)
    category = category or Category.TRANSACTIONAL
    topic = request.topic if request.topic is not None else (template[0].topic if template else "")
    facts = policy_input(request, context, channel=channel, category=category, topic=topic)
    return _Option(channel, template, category, topic, policy.decide(facts))


def _available_channels(request: SendRequest, context: Context) -> list[MessageChannel]:
    if request.content is not None:
        return [request.channel] if request.channel is not None else []
    return list(context.templates.get(request.template or "", {}))


def _choose(request: SendRequest, context: Context, available: Sequence[MessageChannel]) -> _Option:
    """The asked channel, or for "auto" the first allowed one in the customer's preference
    and then the configured order. Nothing allowed: the first available, to be refused with
    its reason. Each channel's policies are decided once."""
    if request.channel is not None:
        return _option(request, context, request.channel)
    customer = context.customers[request.customer_id]
    preferred = customer.traits.get("preferred_channel")
    order = [MessageChannel(c) for c in get_settings().auto_channel_order]
    order += [c for c in MessageChannel if c not in order]
    options: dict[MessageChannel, _Option] = {}

    def decided(channel: MessageChannel) -> _Option:
        if channel not in options:
            options[channel] = _option(request, context, channel)
        return options[channel]

    chosen = policy.choose_channel(
        preferred=MessageChannel(preferred) if preferred in set(MessageChannel) else None,
        order=order,
        available=available,
        allowed=lambda channel: decided(channel).verdict.kind != policy.VerdictKind.REFUSE,
    )
    if chosen is None:
        ordered = [c for c in order if c in available]
        chosen = ordered[0] if ordered else MessageChannel.EMAIL
    return decided(chosen)


def _row(
    request: SendRequest,
    context: Context,
    *,
    channel: MessageChannel,
    category: Category,
    topic: str,
) -> dict[str, Any]:
    customer = context.customers[request.customer_id]
    return {
        "id": ids.new_id(),
        "customer_id": customer.id,
        "channel": channel,
        "category": category,
        "topic": topic,
        "template_key": None,
        "template_version": None,
        "locale": None,
        "broadcast_id": request.broadcast_id,
        "idempotency_key": request.idempotency_key,
        "status": DeliveryStatus.QUEUED,
        "reason": None,
        "address": address_of(channel, customer, context.push.get(customer.id, [])),
        "content": {},
        "provider": None,
        "provider_message_id": None,
        "attempts": 0,
        "next_attempt_at": None,
        "locked_by": None,
        "locked_until": None,
        "expires_at": request.expires_at,
        "created_at": context.now,
        "updated_at": context.now,
        "sent_at": None,
        "delivered_at": None,
        "opened_at": None,
        "clicked_at": None,
    }


def _apply_verdict(
    result: Plan,
    request: SendRequest,
    context: Context,
    template: tuple[Template, TemplateVersion] | None,
    *,
    render_refused: bool,
) -> None:
    row, verdict = result.row, result.verdict
    if verdict.kind == policy.VerdictKind.REFUSE:
        expired = (verdict.reason or "").startswith("expired")
        row["status"] = DeliveryStatus.EXPIRED if expired else DeliveryStatus.SUPPRESSED
        row["reason"] = f"{verdict.reason}: {verdict.message}"
        if not render_refused or (template is None and request.content is None):
            return  # nothing to render: no content on this channel
    not_before = max(context.now, request.not_before or context.now)
    if verdict.kind == policy.VerdictKind.DEFER:
        assert verdict.at is not None
        row["status"] = DeliveryStatus.DEFERRED
        row["reason"] = f"{verdict.reason}: {verdict.message}"
        not_before = max(verdict.at, not_before)
    try:
        row["content"] = render(request, context, row=row, template=template, at=not_before)
    except rendering.RenderFailed as exc:
        row["status"], row["reason"] = DeliveryStatus.FAILED, f"render_failed: {exc}"
        result.error = str(exc)
        return
    if verdict.kind == policy.VerdictKind.REFUSE:
        return
    row["next_attempt_at"] = not_before
    if row["channel"] == MessageChannel.WEBHOOK:
        row["address"] = row["content"].get("url")


def render(
    request: SendRequest,
    context: Context,
    *,
    row: dict[str, Any],
    template: tuple[Template, TemplateVersion] | None,
    at: datetime,
) -> dict[str, Any]:
    """The rendered content, as it will go out `at` (its locale set on the row first, so a
    failure still says which variant failed); RenderFailed when it cannot be made whole."""
    customer = context.customers[request.customer_id]
    channel = MessageChannel(row["channel"])
    wanted = request.locale or customer.locale
    if template is not None:
        locale = templates.locale_for(template[0], template[1], wanted)
        compiled, strict = templates.compiled(template[0], template[1], locale), template[0].strict
    else:
        assert request.content is not None
        locale = wanted or "en"
        compiled, strict = rendering.compile_source(channel, dict(request.content)), True
    row["locale"] = locale
    variables = _variables(request, context, delivery_id=row["id"])
    content = rendering.render(
        compiled,
        rendering.RenderContext(
            variables=variables,
            locale=locale,
            timezone=customer.timezone or get_settings().default_timezone,
        ),
        strict=strict,
        whatsapp_free_text=_window_open(context.whatsapp_last_inbound.get(customer.id), at),
    )
    if channel == MessageChannel.EMAIL:
        content = _tracked(content, row["id"], keep=variables["links"].made())
    return content


def _window_open(last_inbound: datetime | None, at: datetime) -> bool:
    """Free text only if the message goes out within 24 hours of the customer's last
    WhatsApp message (a message deferred past that goes as the approved template)."""
    return last_inbound is not None and at < last_inbound + WHATSAPP_WINDOW


def _variables(request: SendRequest, context: Context, *, delivery_id: str) -> dict[str, Any]:
    customer = context.customers[request.customer_id]
    return {
        "customer": customer.profile(),
        "traits": customer.traits,
        "facts": _Deferred(lambda: context.facts.of(customer.id)),
        "event": dict(request.event),
        "links": _Links(delivery_id, customer.id, now=context.now),
    }


class _BatchFacts:
    """The facts of a batch's customers, read for all of them when a template first prints
    one (two queries), and not at all when none does: most templates never print them."""

    def __init__(self, session: Session, customer_ids: Sequence[str]) -> None:
        self._session = session
        self._customer_ids = customer_ids
        self._read: dict[str, FactsRead] | None = None

    def of(self, customer_id: str) -> dict[str, Any]:
        if self._read is None:
            self._read = customers.facts_of(self._session, self._customer_ids)
        return self._read[customer_id].model_dump(mode="json")


class _Deferred(Mapping[str, Any]):
    """A namespace made when a template first reads from it: few templates print the
    facts, which are read from the database only then (`_BatchFacts`)."""

    def __init__(self, make: Callable[[], dict[str, Any]]) -> None:
        self._make = make
        self._made: dict[str, Any] | None = None

    def _values(self) -> dict[str, Any]:
        if self._made is None:
            self._made = self._make()
        return self._made

    def __getitem__(self, key: str) -> Any:
        return self._values()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())

    def __len__(self) -> int:
        return len(self._values())

    def __str__(self) -> str:  # what `{{ facts }}` prints: as the dict it stands for
        return str(self._values())


class _Links(Mapping[str, str]):
    """`links.unsubscribe` and `links.preferences`, each signed when a template first reads
    it: an SMS seldom prints either, and each is an HMAC and a token (a tenth of a send)."""

    def __init__(self, delivery_id: str, customer_id: str, *, now: datetime) -> None:
        self._makers: dict[str, Callable[[], str]] = {
            "unsubscribe": lambda: links.unsubscribe_url(delivery_id),
            "preferences": lambda: links.preferences_url(customer_id, now=now),
        }
        self._made: dict[str, str] = {}

    def __getitem__(self, key: str) -> str:
        if key not in self._made:
            self._made[key] = self._makers[key]()  # KeyError: Liquid's "not defined"
        return self._made[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._makers)

    def __len__(self) -> int:
        return len(self._makers)

    def __str__(self) -> str:  # what `{{ links }}` prints: as the dict it stands for
        return str(dict(self))

    def made(self) -> list[str]:
        """The links a template printed (or read), which click tracking must leave alone."""
        return list(self._made.values())


def _tracked(content: dict[str, Any], delivery_id: str, *, keep: Iterable[str]) -> dict[str, Any]:
    """Clicks go through a signed redirect, opens through a pixel (both recorded as events)."""
    html = rendering.rewrite_links(
        str(content["html"]), lambda url: links.click_url(delivery_id, url), keep=set(keep)
    )
    return {**content, "html": rendering.open_pixel(html, links.open_url(delivery_id))}
