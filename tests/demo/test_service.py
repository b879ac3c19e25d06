"""Loading the demo store gives the profiles, orders and facts its messages describe."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from regulars.customers.models import Customer, CustomerFacts, Event, EventType
from regulars.db import Database, session_scope
from regulars.demo import service
from regulars.demo.generator import Message, generate
from regulars.errors import Conflict
from regulars.identity import service as identity

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
SMALL = {"seed": 11, "customers": 50, "months": 2}


def _cents(value: object) -> int:
    return int(Decimal(str(value)) * 100)


def _expected_facts(messages: list[Message]) -> dict[str, tuple[int, int, int, int]]:
    """(orders, revenue cents, refunds, refunded cents) per userId, guest orders included."""
    owner_of_device = {
        m["anonymousId"]: m["userId"] for m in messages if "userId" in m and "anonymousId" in m
    }
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for m in messages:
        user = m.get("userId") or owner_of_device.get(m.get("anonymousId", ""))
        if user is None or m.get("event") not in ("Order Completed", "Order Refunded"):
            continue
        slot = 0 if m["event"] == "Order Completed" else 2
        totals[user][slot] += 1
        totals[user][slot + 1] += _cents(m["properties"]["revenue"])
    return {user: (a, b, c, d) for user, (a, b, c, d) in totals.items()}


def _stored_facts() -> dict[str, tuple[int, int, int, int]]:
    query = select(
        Customer.external_id,
        CustomerFacts.orders_count,
        CustomerFacts.revenue_total_cents,
        CustomerFacts.refunds_count,
        CustomerFacts.refunded_total_cents,
    ).join(CustomerFacts, CustomerFacts.customer_id == Customer.id)
    with session_scope(readonly=True) as session:
        return {
            str(row[0]): (row[1], row[2], row[3], row[4])
            for row in session.execute(query)
            if row[0] is not None and (row[1] or row[3])
        }


def _load(*, force: bool = False) -> service.DemoSummary:
    with session_scope() as session:
        return service.load(session, now=NOW, force=force, **SMALL)


def test_loaded_facts_match_the_orders_the_generator_made(database: Database) -> None:
    messages = list(generate(SMALL["seed"], customers=50, months=2, now=NOW))
    expected = _expected_facts(messages)
    assert sum(orders for orders, _, _, _ in expected.values()) > 20

    summary = _load()

    assert summary.rejected == 0
    assert summary.events == len(messages)
    assert summary.orders == sum(orders for orders, _, _, _ in expected.values())
    assert summary.revenue_cents == sum(revenue for _, revenue, _, _ in expected.values())
    assert _stored_facts() == expected


def test_loaded_store_has_every_customer_and_visitor(database: Database) -> None:
    messages = list(generate(SMALL["seed"], customers=50, months=2, now=NOW))
    users = {m["userId"] for m in messages if "userId" in m}
    linked = {m["anonymousId"] for m in messages if "userId" in m and "anonymousId" in m}
    visitors = {m["anonymousId"] for m in messages if "anonymousId" in m} - linked

    summary = _load()

    with session_scope(readonly=True) as session:
        known = set(
            session.scalars(select(Customer.external_id).where(Customer.external_id.is_not(None)))
        )
        profiles = session.scalar(select(func.count()).select_from(Customer))
        events = session.scalar(
            select(func.count()).select_from(Event).where(Event.type != EventType.SYSTEM)
        )
        zones = set(
            session.scalars(select(Customer.timezone).where(Customer.external_id.is_not(None)))
        )
    assert summary.customers == len(users) == 50
    assert known == users
    assert profiles == len(users) + len(visitors)
    assert events == len(messages)
    assert None not in zones


def test_load_creates_the_demo_source_and_an_admin_key(database: Database) -> None:
    summary = _load()

    assert summary.source is not None
    assert summary.api_key is not None
    with session_scope() as session:
        api_key = identity.authenticate(session, summary.api_key)
        sources = [s.name for s in identity.list_sources(session)]
    assert api_key is not None
    assert api_key.scope == "admin"
    assert sources == ["demo"]


def test_a_database_with_customers_is_refused_without_force(database: Database) -> None:
    _load()
    with pytest.raises(Conflict, match="--force"):
        _load()


def test_force_loads_again_and_stores_nothing_twice(database: Database) -> None:
    first = _load()
    again = _load(force=True)

    assert again.events == 0
    assert again.duplicates == first.events
    with session_scope(readonly=True) as session:
        sources = [s.name for s in identity.list_sources(session)]
        events = session.scalar(
            select(func.count()).select_from(Event).where(Event.type != EventType.SYSTEM)
        )
    assert sources == ["demo"]
    assert events == first.events
