"""The overview's figures, computed by the worker every minute (`analytics.refresh`) and stored
as one snapshot row that the page reads by primary key. Recent activity is read live (the
last rows of the events' primary key).

A refresh is incremental: the window is DAYS days (UTC), and each day's figures (events,
orders and their revenue, messages by channel and status) are kept in the snapshot. Today and
yesterday are counted again at every refresh, and so is any day missing from the snapshot or
not yet settled in it. A day is settled once it is two days old: a snapshot computed at or
after the start of day D+2 holds day D's final figures, and later refreshes copy them as they
are. An event back-dated into a settled day (a late import, a device that was offline for
days) is therefore not counted in that day's figures until `regulars analytics refresh
--full` recomputes every day of the window. Totals (customers, active customers, orders and
revenue from the customers' facts) are recomputed at every refresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict, cast

from sqlalchemy.orm import Session

from regulars.analytics import repository
from regulars.customers.rules import MessageInvalid, display_name, order_amount_cents
from regulars.kit.ids import id_floor

DAYS = 30
OVERVIEW = "overview"  # the snapshot's key
SETTLED_AFTER = timedelta(days=2)


class DayFigures(TypedDict):
    events: int
    orders: int
    revenue_cents: int
    messages: dict[str, dict[str, int]]  # channel -> status -> n


class OverviewPayload(TypedDict):
    """The stored snapshot: totals, and each day of the window by its date (YYYY-MM-DD)."""

    customers: int
    active: int
    orders: int
    revenue_cents: int
    days: dict[str, DayFigures]


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
    orders_per_day: list[int]
    messages: dict[str, dict[str, int]]  # channel -> status -> n

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


def overview(session: Session) -> Summary | None:
    """The stored figures; None before the first refresh."""
    stored = repository.get_snapshot(session, OVERVIEW)
    if stored is None:
        return None
    return summarize(cast(OverviewPayload, stored.payload), computed_at=stored.computed_at)


def refresh(session: Session, *, now: datetime, full: bool = False) -> Summary:
    """Compute the figures as of `now`, store them (flushed, not committed) and return them:
    settled days from the stored snapshot, the others counted now; `full` counts every day."""
    return store(session, count(session, now=now, full=full), now=now)


def store(session: Session, payload: OverviewPayload, *, now: datetime) -> Summary:
    """Save figures `count` made as the snapshot the dashboard reads."""
    repository.save_snapshot(session, OVERVIEW, payload, computed_at=now)
    return summarize(payload, computed_at=now)


def count(session: Session, *, now: datetime, full: bool = False) -> OverviewPayload:
    """The figures as of `now`, read only: settled days from the stored snapshot, the others
    counted now; `full` counts every day."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [today - timedelta(days=DAYS - 1 - n) for n in range(DAYS)]
    settled = {} if full else _settled_days(session, before=today - timedelta(days=1))
    days: dict[str, DayFigures] = {}
    for start in starts:
        key = start.date().isoformat()
        days[key] = settled[key] if key in settled else _day_figures(session, start)
    active, orders, cents = repository.facts_totals(session, seen_since=now - timedelta(days=DAYS))
    return OverviewPayload(
        customers=repository.count_customers(session),
        active=active,
        orders=orders,
        revenue_cents=cents,
        days=days,
    )


def _settled_days(session: Session, *, before: datetime) -> dict[str, DayFigures]:
    """The stored days that are final: earlier than `before` (yesterday) and at least two
    days old when the stored snapshot was computed."""
    stored = repository.get_snapshot(session, OVERVIEW)
    if stored is None:
        return {}
    days = cast(OverviewPayload, stored.payload).get("days", {})
    kept = {}
    for key, figures in days.items():
        start = datetime.fromisoformat(key).replace(tzinfo=UTC)
        if start < before and start + SETTLED_AFTER <= stored.computed_at:
            kept[key] = figures
    return kept


def _day_figures(session: Session, start: datetime) -> DayFigures:
    end = start + timedelta(days=1)
    orders = repository.orders_between(session, start, end)
    messages: dict[str, dict[str, int]] = {}
    for channel, status, n in repository.deliveries_by_channel_status(
        session, id_floor(start), id_floor(end)
    ):
        messages.setdefault(channel, {})[status] = n
    return DayFigures(
        events=repository.count_events_between(session, start, end),
        orders=len(orders),
        revenue_cents=sum(_order_cents(properties) for _, properties in orders),
        messages=messages,
    )


def _order_cents(properties: dict[str, Any]) -> int:
    try:
        return order_amount_cents(properties)
    except MessageInvalid:
        return 0


def summarize(payload: OverviewPayload, *, computed_at: datetime) -> Summary:
    days = sorted(payload["days"])
    messages: dict[str, dict[str, int]] = {}
    for key in days:
        for channel, counts in payload["days"][key]["messages"].items():
            by_status = messages.setdefault(channel, {})
            for status, n in counts.items():
                by_status[status] = by_status.get(status, 0) + n
    return Summary(
        computed_at=computed_at,
        days=days,
        customers=payload["customers"],
        active=payload["active"],
        events_per_day=[payload["days"][key]["events"] for key in days],
        orders=payload["orders"],
        revenue_cents=payload["revenue_cents"],
        revenue_per_day_cents=[payload["days"][key]["revenue_cents"] for key in days],
        orders_per_day=[payload["days"][key]["orders"] for key in days],
        messages=messages,
    )


def recent_activity(session: Session, *, limit: int = 20) -> list[Activity]:
    return [
        Activity(
            customer_id=customer.id,
            customer=display_name(customer.first_name, customer.last_name)
            or customer.email
            or customer.id,
            type=str(event.type),
            name=event.name,
            properties=event.properties,
            timestamp=event.timestamp,
        )
        for event, customer in repository.latest_events(session, limit)
    ]
