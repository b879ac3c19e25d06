"""Property tests of the ingestion core against plain reference computations.

Each hypothesis example works in its own namespace of ids, so examples share one database.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from regulars.customers.models import Customer, CustomerFacts, Event, Identity
from regulars.db import Database, session_scope
from tests.customers.helpers import ingest

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_namespaces = itertools.count()

USERS = st.sampled_from(["u1", "u2", "u3"])
ANONS = st.sampled_from(["a1", "a2", "a3", "a4"])
OPERATIONS = st.one_of(
    st.tuples(st.just("identify"), USERS, st.none() | ANONS),
    st.tuples(st.just("alias"), USERS | ANONS, USERS),
    st.tuples(st.just("track"), st.none() | USERS, ANONS),
    st.tuples(st.just("order"), USERS, st.integers(0, 50_000)),
)
HYPOTHESIS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _messages(ns: str, operations: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for i, (kind, first, second) in enumerate(operations):
        base: dict[str, Any] = {
            "messageId": f"{ns}m{i}",
            "timestamp": (T0 + timedelta(minutes=i)).isoformat(),
        }
        if kind == "identify":
            base |= {"type": "identify", "userId": ns + first}
            if second:
                base["anonymousId"] = ns + second
        elif kind == "alias":
            base |= {"type": "alias", "previousId": ns + first, "userId": ns + second}
        elif kind == "track":
            base |= {"type": "track", "event": "Product Viewed", "anonymousId": ns + second}
            if first:
                base["userId"] = ns + first
        else:
            base |= {
                "type": "track",
                "event": "Order Completed",
                "userId": ns + first,
                "properties": {"revenue": second / 100},
            }
        messages.append(base)
    return messages


def _send_in_batches(messages: list[dict[str, Any]], cuts: list[int]) -> None:
    bounds = sorted({0, len(messages), *(c % (len(messages) + 1) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        ingest(messages[start:end])


def _snapshot(ns: str) -> tuple[dict[str, str], list[Event], dict[str, CustomerFacts]]:
    with session_scope(readonly=True) as session:
        owners = {
            i.value: i.customer_id
            for i in session.scalars(select(Identity).where(Identity.value.startswith(ns)))
        }
        events = list(session.scalars(select(Event).where(Event.message_id.startswith(ns))))
        ids = set(owners.values())
        facts = {
            f.customer_id: f
            for f in session.scalars(
                select(CustomerFacts).where(CustomerFacts.customer_id.in_(ids))
            )
        }
        existing = set(session.scalars(select(Customer.id).where(Customer.id.in_(ids))))
    assert existing == ids, "an identity points at a profile that does not exist"
    return owners, events, facts


def _partition(owners: dict[str, str], ns: str) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = defaultdict(set)
    for value, customer_id in owners.items():
        groups[customer_id].add(value.removeprefix(ns))
    return {frozenset(g) for g in groups.values()}


@HYPOTHESIS
@given(operations=st.lists(OPERATIONS, min_size=1, max_size=25), cuts=st.lists(st.integers(0, 30)))
def test_no_event_is_lost_or_counted_twice_and_every_id_has_one_profile(
    database: Database, operations: list[tuple[Any, ...]], cuts: list[int]
) -> None:
    ns = f"p{next(_namespaces)}-"
    messages = _messages(ns, operations)
    _send_in_batches(messages, cuts)
    _send_in_batches(messages, [])  # a retry of everything changes nothing
    owners, events, facts = _snapshot(ns)

    assert sorted(e.message_id for e in events) == sorted(m["messageId"] for m in messages)
    for message, event in zip(messages, sorted(events, key=lambda e: e.timestamp), strict=True):
        primary = message.get("userId") or message["anonymousId"]
        assert event.customer_id == owners[primary], f"{message} is on the wrong profile"
    per_customer = Counter(e.customer_id for e in events)
    assert {c: f.events_count for c, f in facts.items() if f.events_count} == dict(per_customer)
    orders = [m for m in messages if m.get("event") == "Order Completed"]
    assert sum(f.orders_count for f in facts.values()) == len(orders)
    assert sum(f.revenue_total_cents for f in facts.values()) == sum(
        round(m["properties"]["revenue"] * 100) for m in orders
    )


@HYPOTHESIS
@given(operations=st.lists(OPERATIONS, min_size=1, max_size=20), cuts=st.lists(st.integers(0, 30)))
def test_how_a_stream_is_cut_into_batches_does_not_change_who_is_who(
    database: Database, operations: list[tuple[Any, ...]], cuts: list[int]
) -> None:
    one_ns, cut_ns = f"q{next(_namespaces)}-", f"q{next(_namespaces)}-"
    _send_in_batches(_messages(one_ns, operations), [])
    for message in _messages(cut_ns, operations):
        ingest([message])
    assert _partition(_snapshot(one_ns)[0], one_ns) == _partition(_snapshot(cut_ns)[0], cut_ns)


@HYPOTHESIS
@given(
    orders=st.lists(
        st.tuples(
            st.sampled_from(["u1", "u2"]),
            st.sampled_from(["Order Completed", "Order Refunded", "Product Viewed"]),
            st.integers(0, 10**6),
            st.integers(0, 10**4),
        ),
        min_size=1,
        max_size=30,
    ),
    cuts=st.lists(st.integers(0, 30)),
)
def test_facts_equal_a_recomputation_from_the_timeline(
    database: Database, orders: list[tuple[str, str, int, int]], cuts: list[int]
) -> None:
    ns = f"f{next(_namespaces)}-"
    messages = [
        {
            "type": "track",
            "userId": ns + user,
            "event": event,
            "messageId": f"{ns}{i}",
            "properties": {"revenue": f"{cents // 100}.{cents % 100:02d}"},
            "timestamp": (T0 + timedelta(minutes=minute)).isoformat(),
        }
        for i, (user, event, cents, minute) in enumerate(orders)
    ]
    _send_in_batches(messages, cuts)
    owners, events, facts = _snapshot(ns)
    for user in {ns + u for u, *_ in orders}:
        mine = [e for e in events if e.customer_id == owners[user]]
        completed = [e for e in mine if e.name == "Order Completed"]
        refunded = [e for e in mine if e.name == "Order Refunded"]
        row = facts[owners[user]]
        cents = [int(e.properties["revenue"].replace(".", "")) for e in completed]
        assert row.orders_count == len(completed)
        assert row.revenue_total_cents == sum(cents)
        assert row.refunds_count == len(refunded)
        assert row.refunded_total_cents == sum(
            int(e.properties["revenue"].replace(".", "")) for e in refunded
        )
        assert row.first_order_at == min((e.timestamp for e in completed), default=None)
        assert row.last_order_at == max((e.timestamp for e in completed), default=None)
        assert row.last_seen_at == max(e.timestamp for e in mine)
        assert row.events_count == len(mine)
