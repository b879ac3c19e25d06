"""The overview's queries: read-only over every domain, each one an index range or a small
table's scan; and the one table analytics writes, its stored snapshots."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from regulars.analytics.models import AnalyticsSnapshot
from regulars.customers.models import Customer, CustomerFacts, Event
from regulars.customers.rules import ORDER_COMPLETED
from regulars.messages.models import Delivery


def get_snapshot(session: Session, key: str) -> AnalyticsSnapshot | None:
    """The stored snapshot, read afresh (an upsert earlier in the session is not stale)."""
    query = select(AnalyticsSnapshot).where(AnalyticsSnapshot.key == key)
    return session.scalars(query.execution_options(populate_existing=True)).one_or_none()


def save_snapshot(
    session: Session, key: str, payload: Mapping[str, object], *, computed_at: datetime
) -> None:
    """Insert or replace the snapshot `key` (two writers at once: the last one wins)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(AnalyticsSnapshot).values(
        key=key, payload=payload, computed_at=computed_at
    )
    new = statement.excluded
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["key"], set_={"payload": new.payload, "computed_at": new.computed_at}
        )
    )


def count_customers(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Customer)) or 0)


def facts_totals(session: Session, *, seen_since: datetime) -> tuple[int, int, int]:
    """(customers seen since `seen_since`, orders, revenue in cents) of every customer, from
    their facts: one scan of the table."""
    query = select(
        func.count().filter(CustomerFacts.last_seen_at >= seen_since),
        func.coalesce(func.sum(CustomerFacts.orders_count), 0),
        func.coalesce(func.sum(CustomerFacts.revenue_total_cents), 0),
    )
    active, orders, cents = session.execute(query).one()
    return int(active), int(orders), int(cents)


def count_events_between(session: Session, start: datetime, end: datetime) -> int:
    """Events in [start, end): a range of ix_events_timestamp_name, read in the index only."""
    query = select(func.count()).where(Event.timestamp >= start, Event.timestamp < end)
    return int(session.scalar(query) or 0)


def orders_between(
    session: Session, start: datetime, end: datetime
) -> list[tuple[datetime, dict[str, Any]]]:
    """Order Completed events in [start, end), read along ix_events_timestamp_name.

    SQLite, given `name = ...`, picks ix_events_name_customer_timestamp instead and reads
    every order ever made, so there the name is tested as `name || ''`: no index on name can
    serve that, and the timestamp range is the only way in. PostgreSQL, by cost, takes the
    range with the name in the index condition (a day of a million events: 20 ms), where
    `name || ''` would leave it to check every event of the day in the table (500 ms)."""
    if session.get_bind().dialect.name == "postgresql":
        named = Event.name == ORDER_COMPLETED
    else:
        named = (Event.name + "") == ORDER_COMPLETED
    query = select(Event.timestamp, Event.properties).where(
        Event.timestamp >= start, Event.timestamp < end, named
    )
    return [(at, properties) for at, properties in session.execute(query)]


def deliveries_by_channel_status(
    session: Session, from_id: str, to_id: str
) -> list[tuple[str, str, int]]:
    """Deliveries made between the times `from_id` and `to_id` encode, [from, to): ULIDs
    sort by time, so a range of the primary key."""
    query = (
        select(Delivery.channel, Delivery.status, func.count())
        .where(Delivery.id >= from_id, Delivery.id < to_id)
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
