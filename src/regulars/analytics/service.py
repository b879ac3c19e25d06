"""The overview's figures. Counting over millions of events per request is too slow, so
the summary is computed at most once a minute per process (per database) and kept in
memory; the page says when it was computed. Recent activity is read live (the last rows
of the events' primary key)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from regulars.analytics import repository
from regulars.customers.rules import MessageInvalid, order_amount_cents
from regulars.kit import clock

DAYS = 30
FRESH_FOR = timedelta(minutes=1)
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass(frozen=True, slots=True)
class Summary:
    computed_at: datetime
    days: list[str]  # YYYY-MM-DD, oldest first (UTC)
    customers: int
    active: int  # seen in the last DAYS days
    events_per_day: list[int]
    orders: int
    revenue_cents: int
    revenue_per_day_cents: list[int]
    messages: dict[str, dict[str, int]] = field(default_factory=dict)  # channel -> status -> n

    @property
    def events(self) -> int:
        return sum(self.events_per_day)


@dataclass(frozen=True, slots=True)
class Activity:
    customer_id: str
    customer: str
    type: str
    name: str | None
    properties: dict[str, Any]
    timestamp: datetime


_cache: dict[str, Summary] = {}
_lock = threading.Lock()


def id_floor(at: datetime) -> str:
    """The smallest ULID made at `at` or later."""
    value = int(at.timestamp() * 1000) << 80
    return "".join(_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def forget() -> None:
    """Drop cached summaries (tests; a process that just loaded data)."""
    _cache.clear()


def summary(session: Session) -> Summary:
    """The cached summary of this database, computed anew when older than a minute."""
    key = repository.database_key(session)
    now = clock.now()
    with _lock:
        cached = _cache.get(key)
        if cached is None or now - cached.computed_at >= FRESH_FOR or now < cached.computed_at:
            cached = _cache[key] = compute(session, now=now)
    return cached


def _order_cents(properties: dict[str, Any]) -> int:
    try:
        return order_amount_cents(properties)
    except MessageInvalid:
        return 0


def compute(session: Session, *, now: datetime) -> Summary:
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [today - timedelta(days=DAYS - 1 - n) for n in range(DAYS)]
    revenue = [0] * DAYS
    for at, properties in repository.orders_since(session, starts[0]):
        index = (at.astimezone(UTC) - starts[0]).days
        if 0 <= index < DAYS:
            revenue[index] += _order_cents(properties)
    messages: dict[str, dict[str, int]] = {}
    for channel, status, n in repository.deliveries_by_channel_status(session, id_floor(starts[0])):
        messages.setdefault(channel, {})[status] = n
    orders, cents = repository.revenue_totals(session)
    return Summary(
        computed_at=now,
        days=[s.date().isoformat() for s in starts],
        customers=repository.count_customers(session),
        active=repository.count_seen_since(session, now - timedelta(days=DAYS)),
        events_per_day=[
            repository.count_events_between(session, s, s + timedelta(days=1)) for s in starts
        ],
        orders=orders,
        revenue_cents=cents,
        revenue_per_day_cents=revenue,
        messages=messages,
    )


def recent_activity(session: Session, *, limit: int = 20) -> list[Activity]:
    return [
        Activity(
            customer_id=customer.id,
            customer=" ".join(p for p in (customer.first_name, customer.last_name) if p)
            or customer.email
            or customer.id,
            type=str(event.type),
            name=event.name,
            properties=event.properties,
            timestamp=event.timestamp,
        )
        for event, customer in repository.latest_events(session, limit)
    ]
