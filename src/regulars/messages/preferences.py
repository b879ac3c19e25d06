"""The public preference centre: which channels and topics a customer hears from, a pause
for N days, or unsubscribe from everything. Reached through a signed, expiring link."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from regulars.customers import service as customers
from regulars.customers.models import Channel, ConsentStatus
from regulars.customers.schemas import ConsentUpdate
from regulars.errors import NotFound, ValidationFailed
from regulars.kit import clock
from regulars.messages import repository
from regulars.messages.models import MessageChannel

SOURCE = "preference_centre"
CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.WHATSAPP, Channel.PUSH)
LABELS = {
    Channel.EMAIL: "Email",
    Channel.SMS: "Text messages (SMS)",
    Channel.WHATSAPP: "WhatsApp",
    Channel.PUSH: "Browser notifications",
}
MAX_PAUSE_DAYS = 365


@dataclass(frozen=True, slots=True)
class Choice:
    key: str
    label: str
    subscribed: bool


@dataclass(frozen=True, slots=True)
class Preferences:
    customer_id: str
    first_name: str | None
    channels: list[Choice]
    topics: list[Choice]  # topics of email (newsletter, offers...)
    paused_until: datetime | None


def view(session: Session, customer_id: str) -> Preferences:
    """The choices of the customer a link names, or of the profile it was merged into since
    (the link in an older message names the id the customer had then)."""
    survivor = customers.resolve_id(session, customer_id)
    found = customers.get_customers(session, [survivor]).get(survivor) if survivor else None
    if found is None:
        raise NotFound("this customer no longer exists")
    customer_id = found.id
    status = {(c.channel.value, c.topic): c.status for c in found.consents}
    reachable = {
        Channel.EMAIL: bool(found.email),
        Channel.SMS: bool(found.phone),
        Channel.WHATSAPP: bool(found.phone),
        Channel.PUSH: bool(repository.push_subscriptions_of(session, [customer_id])),
    }
    channels = [
        Choice(c.value, LABELS[c], status.get((c.value, "")) == ConsentStatus.SUBSCRIBED)
        for c in CHANNELS
        if reachable[c]
    ]
    topics = sorted(
        set(repository.template_topics(session, MessageChannel.EMAIL))
        | {topic for (channel, topic) in status if channel == "email" and topic}
    )
    return Preferences(
        customer_id=customer_id,
        first_name=found.first_name,
        channels=channels,
        topics=[
            Choice(t, t.replace("_", " ").capitalize(), status.get(("email", t)) != "unsubscribed")
            for t in topics
        ],
        paused_until=repository.pauses_of(session, [customer_id]).get(customer_id),
    )


def save(
    session: Session,
    customer_id: str,
    *,
    channels: Collection[str],
    topics: Collection[str],
    pause_days: int | None,
    unsubscribe_all: bool,
) -> Preferences:
    """Apply the form: each shown channel and topic on or off, an optional pause."""
    current = view(session, customer_id)
    if pause_days is not None and not 0 <= pause_days <= MAX_PAUSE_DAYS:
        raise ValidationFailed(f"pause for 0 to {MAX_PAUSE_DAYS} days")
    wanted = set() if unsubscribe_all else set(channels)
    wanted_topics = set() if unsubscribe_all else set(topics)
    changes = [
        _change(Channel(c.key), "", c.key in wanted)
        for c in current.channels
        if c.subscribed != (c.key in wanted)
    ]
    changes += [
        _change(Channel.EMAIL, t.key, t.key in wanted_topics)
        for t in current.topics
        if t.subscribed != (t.key in wanted_topics)
    ]
    if changes:
        customers.change_consents(session, current.customer_id, changes, source=SOURCE)
    if pause_days is not None:
        until = clock.now() + timedelta(days=pause_days) if pause_days else None
        repository.set_pause(session, current.customer_id, until)
        session.flush()
    return view(session, current.customer_id)


def _change(channel: Channel, topic: str, subscribed: bool) -> ConsentUpdate:
    status = ConsentStatus.SUBSCRIBED if subscribed else ConsentStatus.UNSUBSCRIBED
    return ConsentUpdate(channel=channel, topic=topic, status=status)
