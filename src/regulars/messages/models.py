"""Templates, deliveries (the queue), providers, suppressions, push subscriptions, the in-app
inbox and broadcasts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from regulars.customers.models import customer_fk
from regulars.db import Base


class MessageChannel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    PUSH = "push"
    INAPP = "inapp"
    WEBHOOK = "webhook"


class Category(StrEnum):
    """Transactional messages answer something the customer did (an order shipped); marketing
    messages are the business speaking first (a newsletter). Policies differ by category."""

    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"


class DeliveryStatus(StrEnum):
    QUEUED = "queued"  # waiting for the worker (next_attempt_at)
    DEFERRED = "deferred"  # waiting for quiet hours to end, or for a retry after an error
    SENDING = "sending"  # claimed by a worker (locked_until)
    SENT = "sent"  # handed to the provider
    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"
    SUPPRESSED = "suppressed"  # a policy refused it; `reason` says which
    BOUNCED = "bounced"
    FAILED = "failed"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


PENDING_STATUSES = (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED, DeliveryStatus.SENDING)
# How far a delivery got: a later status never goes back to an earlier one.
PROGRESS = (
    DeliveryStatus.SENT,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.OPENED,
    DeliveryStatus.CLICKED,
)


class Template(Base):
    """One template per purpose (`key`) and channel; its content lives in versions."""

    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("key", "channel", name="uq_templates_key_channel"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    key: Mapped[str] = mapped_column(String(100))
    channel: Mapped[MessageChannel] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[Category] = mapped_column(String(16))
    topic: Mapped[str] = mapped_column(String(100), default="")
    # Strict: a variable missing at send time fails the delivery instead of rendering empty.
    strict: Mapped[bool] = mapped_column(default=True)
    default_locale: Mapped[str] = mapped_column(String(35))
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class TemplateVersion(Base):
    """Every saved version: `locales` maps a locale to the channel's content fields."""

    __tablename__ = "template_versions"

    template_id: Mapped[str] = mapped_column(
        String(26), ForeignKey("templates.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(primary_key=True)
    locales: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class Provider(Base):
    """A configured provider of a channel; the enabled ones, by priority, are the fail-over
    list. A channel with none sends through the sandbox."""

    __tablename__ = "providers"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    channel: Mapped[MessageChannel] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))  # a key of channels.TRANSPORTS
    config: Mapped[dict[str, Any]]
    priority: Mapped[int] = mapped_column(default=0)
    enabled: Mapped[bool] = mapped_column(default=True)
    rate_per_second: Mapped[float | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Broadcast(Base):
    """One message to a whole segment: a newsletter, a sale, a new collection."""

    __tablename__ = "broadcasts"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    template_key: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(16))  # a MessageChannel or "auto"
    segment_key: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))  # broadcasts.BroadcastStatus
    send_at: Mapped[datetime]
    local_time: Mapped[str | None] = mapped_column(String(5))  # "HH:MM" in each customer's zone
    throttle_per_minute: Mapped[int | None]
    # Expansion progress: members after this customer id are still to be queued.
    cursor: Mapped[str | None] = mapped_column(String(26))
    audience: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]


class Delivery(Base):
    """One message to one customer on one channel, and its fate. The rows with a due
    `next_attempt_at` are the queue the worker claims."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # Only waiting deliveries have a next_attempt_at (a finished one has none), so the
        # queue's index holds the queue alone, however many deliveries are kept.
        Index(
            "ix_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("next_attempt_at IS NOT NULL"),
            sqlite_where=text("next_attempt_at IS NOT NULL"),
        ),
        Index("ix_deliveries_customer_created", "customer_id", "created_at"),
        Index("ix_deliveries_provider_message", "provider", "provider_message_id"),
        Index("ix_deliveries_broadcast_status", "broadcast_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(26), customer_fk())
    channel: Mapped[MessageChannel] = mapped_column(String(16))
    category: Mapped[Category] = mapped_column(String(16))
    topic: Mapped[str] = mapped_column(String(100), default="")
    template_key: Mapped[str | None] = mapped_column(String(100))
    template_version: Mapped[int | None]
    locale: Mapped[str | None] = mapped_column(String(35))
    broadcast_id: Mapped[str | None] = mapped_column(
        String(26), ForeignKey("broadcasts.id", ondelete="SET NULL")
    )
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    status: Mapped[DeliveryStatus] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(500))
    address: Mapped[str | None] = mapped_column(String(2048))
    content: Mapped[dict[str, Any]]
    provider: Mapped[str | None] = mapped_column(String(100))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    locked_by: Mapped[str | None] = mapped_column(String(100))
    locked_until: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    opened_at: Mapped[datetime | None]
    clicked_at: Mapped[datetime | None]


class Suppression(Base):
    """An address no message goes to: hard bounce, complaint, STOP, or by hand."""

    __tablename__ = "suppressions"

    channel: Mapped[MessageChannel] = mapped_column(String(16), primary_key=True)
    address: Mapped[str] = mapped_column(String(2048), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))
    delivery_id: Mapped[str | None] = mapped_column(String(26))
    created_at: Mapped[datetime]


class PushSubscription(Base):
    """A browser's web push subscription (RFC 8030 endpoint and RFC 8291 keys)."""

    __tablename__ = "push_subscriptions"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(26), customer_fk(), index=True)
    endpoint: Mapped[str] = mapped_column(Text, unique=True)
    p256dh: Mapped[str] = mapped_column(String(200))
    auth: Mapped[str] = mapped_column(String(100))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]


class InboxMessage(Base):
    """An in-app message kept in the customer's inbox."""

    __tablename__ = "inbox_messages"
    __table_args__ = (Index("ix_inbox_customer_created", "customer_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(26), customer_fk())
    delivery_id: Mapped[str] = mapped_column(String(26), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime]
    read_at: Mapped[datetime | None]


class MessagePause(Base):
    """ "Pause for N days" from the preference centre: no marketing until `until`."""

    __tablename__ = "message_pauses"

    customer_id: Mapped[str] = mapped_column(String(26), customer_fk(), primary_key=True)
    until: Mapped[datetime]
