from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from regulars.db import Base, BigID


def customer_fk() -> ForeignKey:
    return ForeignKey("customers.id", ondelete="CASCADE")


class IdentityKind(StrEnum):
    USER_ID = "user_id"
    ANONYMOUS_ID = "anonymous_id"


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    PUSH = "push"
    INAPP = "inapp"


class ConsentStatus(StrEnum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    UNKNOWN = "unknown"


class EventType(StrEnum):
    IDENTIFY = "identify"
    TRACK = "track"
    PAGE = "page"
    SCREEN = "screen"
    GROUP = "group"
    ALIAS = "alias"
    SYSTEM = "system"


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    # Looked up through the search indexes below, which lead with them.
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    first_name: Mapped[str | None] = mapped_column(String(255))
    last_name: Mapped[str | None] = mapped_column(String(255))
    locale: Mapped[str | None] = mapped_column(String(35))
    timezone: Mapped[str | None] = mapped_column(String(64), index=True)
    traits: Mapped[dict[str, Any]]
    # When the newest profile data was written: on merges, the newer profile's values win.
    traits_updated_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


# Dashboard search: prefixes of names, email and phone as index ranges in bytewise order;
# the email and phone ones also serve the lookups by address (`email = ?`: the pattern
# operator classes hold equality).
# On PostgreSQL in text_pattern_ops (right whatever the database's collation); SQLite, which
# cannot reflect expression indexes, builds the name ones on `name COLLATE NOCASE` instead.
Index(
    "ix_customers_first_name_search",
    func.lower(Customer.first_name),
    Customer.id,
    postgresql_ops={"lower_1": "text_pattern_ops"},
)
Index(
    "ix_customers_last_name_search",
    func.lower(Customer.last_name),
    Customer.id,
    postgresql_ops={"lower_1": "text_pattern_ops"},
)
Index(
    "ix_customers_email_search",
    Customer.email,
    Customer.id,
    postgresql_ops={"email": "varchar_pattern_ops"},
)
Index(
    "ix_customers_phone_search",
    Customer.phone,
    Customer.id,
    postgresql_ops={"phone": "varchar_pattern_ops"},
)


class Identity(Base):
    """One row per known identifier; the primary key makes "one profile per identity" hold."""

    __tablename__ = "customer_identities"

    kind: Mapped[IdentityKind] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(255), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(26), customer_fk(), index=True)
    created_at: Mapped[datetime]


class CustomerMerge(Base):
    """A profile that was merged away; its id resolves to the survivor forever."""

    __tablename__ = "customer_merges"

    merged_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    survivor_id: Mapped[str] = mapped_column(String(26), customer_fk(), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    merged_at: Mapped[datetime]


class CustomerFacts(Base):
    """Aggregates kept exact in the same transaction as the events that change them."""

    __tablename__ = "customer_facts"

    customer_id: Mapped[str] = mapped_column(String(26), customer_fk(), primary_key=True)
    events_count: Mapped[int] = mapped_column(default=0)
    orders_count: Mapped[int] = mapped_column(default=0)
    revenue_total_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    refunds_count: Mapped[int] = mapped_column(default=0)
    refunded_total_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    first_order_at: Mapped[datetime | None]
    last_order_at: Mapped[datetime | None]
    first_seen_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime | None]
    # RFM scores, 1 (low) to 5 (high), quintiles among customers with an order; refreshed
    # on a schedule (segments.refresh_rfm), empty for customers who never ordered.
    rfm_recency: Mapped[int | None]
    rfm_frequency: Mapped[int | None]
    rfm_monetary: Mapped[int | None]


class CustomerEventCount(Base):
    """Count per tracked event name (REGULARS_TRACKED_EVENTS) per customer."""

    __tablename__ = "customer_event_counts"

    customer_id: Mapped[str] = mapped_column(String(26), customer_fk(), primary_key=True)
    event_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int]
    last_at: Mapped[datetime]


class Event(Base):
    """The timeline. (source, message_id) is unique: a retried call never counts twice."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("source", "message_id", name="uq_events_source_message_id"),
        Index("ix_events_customer_timestamp", "customer_id", "timestamp", "id"),
        # Segments: who performed NAME (in a window), set-based or for a few customers.
        Index("ix_events_name_customer_timestamp", "name", "customer_id", "timestamp"),
        # The overview: events and orders per day over the last days, one index range.
        Index("ix_events_timestamp_name", "timestamp", "name"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(26), customer_fk())
    source: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[EventType] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(255))
    properties: Mapped[dict[str, Any]]
    context: Mapped[dict[str, Any]]
    timestamp: Mapped[datetime]
    received_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class Consent(Base):
    """The current status per channel and topic ("" is the channel as a whole)."""

    __tablename__ = "consents"

    customer_id: Mapped[str] = mapped_column(String(26), customer_fk(), primary_key=True)
    channel: Mapped[Channel] = mapped_column(String(16), primary_key=True)
    topic: Mapped[str] = mapped_column(String(100), primary_key=True)
    status: Mapped[ConsentStatus] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class ConsentChange(Base):
    """Every consent change ever made: the proof a regulator asks for."""

    __tablename__ = "consent_changes"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(26), customer_fk(), index=True)
    channel: Mapped[Channel] = mapped_column(String(16))
    topic: Mapped[str] = mapped_column(String(100))
    status: Mapped[ConsentStatus] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime]


class Group(Base):
    """An account (B2B) made by `group` calls."""

    __tablename__ = "groups"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    group_key: Mapped[str] = mapped_column(String(255), unique=True)
    traits: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class GroupMembership(Base):
    __tablename__ = "group_memberships"

    group_id: Mapped[str] = mapped_column(
        String(26), ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[str] = mapped_column(
        String(26), customer_fk(), primary_key=True, index=True
    )
    joined_at: Mapped[datetime]


class Erasure(Base):
    """The audit row of a GDPR erasure: which opaque id, when, by whom; no personal data."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(26), index=True)
    requested_by: Mapped[str] = mapped_column(String(100))
    rows_deleted: Mapped[dict[str, Any]]
    erased_at: Mapped[datetime]
