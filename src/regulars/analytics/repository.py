"""The overview's queries: read-only, each one an index range or a small table's scan."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from regulars.customers.models import Customer, CustomerFacts, Event
from regulars.customers.rules import ORDER_COMPLETED
from regulars.messages.models import Delivery


def database_key(session: Session) -> str:
    return session.get_bind().engine.url.render_as_string(hide_password=True)


def count_customers(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Customer)) or 0)


def count_seen_since(session: Session, since: datetime) -> int:
    query = select(func.count()).where(CustomerFacts.last_seen_at >= since)
    return int(session.scalar(query) or 0)


def revenue_totals(session: Session) -> tuple[int, int]:
    """(orders, revenue in cents) of every customer, from their facts."""
    query = select(
        func.coalesce(func.sum(CustomerFacts.orders_count), 0),
        func.coalesce(func.sum(CustomerFacts.revenue_total_cents), 0),
    )
    orders, cents = session.execute(query).one()
    return int(orders), int(cents)


def count_events_between(session: Session, start: datetime, end: datetime) -> int:
    """Events in [start, end): a range of ix_events_timestamp_name, read in the index only."""
    query = select(func.count()).where(Event.timestamp >= start, Event.timestamp < end)
    return int(session.scalar(query) or 0)


def orders_since(session: Session, since: datetime) -> list[tuple[datetime, dict[str, Any]]]:
    query = select(Event.timestamp, Event.properties).where(
        Event.timestamp >= since, Event.name == ORDER_COMPLETED
    )
    return [(at, properties) for at, properties in session.execute(query)]


def deliveries_by_channel_status(session: Session, from_id: str) -> list[tuple[str, str, int]]:
    """Deliveries made since the time `from_id` encodes (ULIDs sort by time: a key range)."""
    query = (
        select(Delivery.channel, Delivery.status, func.count())
        .where(Delivery.id >= from_id)
        .group_by(Delivery.channel, Delivery.status)
    )
    return [(str(channel), str(status), int(n)) for channel, status, n in session.execute(query)]


def latest_events(session: Session, limit: int) -> list[tuple[Event, Customer]]:
    """The newest events stored, newest first (the primary key, backwards)."""
    query = (
        select(Event, Customer)
        .join(Customer, Customer.id == Event.customer_id)
        .order_by(Event.id.desc())
        .limit(limit)
    )
    return [(event, customer) for event, customer in session.execute(query)]
