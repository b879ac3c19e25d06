"""RFM scores: quintiles among customers who ordered, set-based, on SQLite and PostgreSQL.

Expected scores are worked by hand from the definition in customers/rfm.py:
score = 1 + floor(5 x (scored customers with a strictly lower value) / scored customers).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from regulars.customers import service
from regulars.customers.models import Customer, CustomerFacts
from regulars.db import Database, session_scope

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
Scores = tuple[int | None, int | None, int | None]


@dataclass(frozen=True)
class Row:
    """One customer's facts: days since the last order, orders, revenue in cents."""

    days_ago: int | None
    orders: int
    cents: int
    stale: Scores = (None, None, None)  # scores stored before the refresh


def _id(n: int) -> str:
    return f"C{n:025d}"


def seed(rows: Sequence[Row]) -> None:
    with session_scope() as session:
        for n in range(len(rows)):
            session.add(Customer(id=_id(n), traits={}, created_at=NOW, updated_at=NOW))
        session.flush()
        for n, row in enumerate(rows):
            last = None if row.days_ago is None else NOW - timedelta(days=row.days_ago)
            session.add(
                CustomerFacts(
                    customer_id=_id(n),
                    orders_count=row.orders,
                    revenue_total_cents=row.cents,
                    first_order_at=last,
                    last_order_at=last,
                    rfm_recency=row.stale[0],
                    rfm_frequency=row.stale[1],
                    rfm_monetary=row.stale[2],
                )
            )


def refresh() -> int:
    with session_scope() as session:
        return service.refresh_rfm(session, now=NOW)


def scores() -> list[Scores]:
    """Every customer's (recency, frequency, monetary), in seeding order."""
    with session_scope(readonly=True) as session:
        rows = session.execute(
            select(
                CustomerFacts.rfm_recency, CustomerFacts.rfm_frequency, CustomerFacts.rfm_monetary
            ).order_by(CustomerFacts.customer_id)
        )
        return [(r, f, m) for r, f, m in rows]


def test_ten_distinct_customers_make_two_per_score(database: Database) -> None:
    # Recency: customer n ordered n days ago, so 0 is the most recent.
    # Frequency: customer n has n + 1 orders. Monetary: a shuffle of 1..10 (x 100 cents).
    cents = [4, 9, 1, 7, 10, 2, 5, 8, 3, 6]
    seed([Row(days_ago=n, orders=n + 1, cents=c * 100) for n, c in enumerate(cents)])
    assert refresh() == 10
    assert [s[0] for s in scores()] == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert [s[1] for s in scores()] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [s[2] for s in scores()] == [2, 5, 1, 4, 5, 1, 3, 4, 2, 3]


def test_seven_customers_split_as_evenly_as_seven_allows(database: Database) -> None:
    # Below-counts 0..6 of 7: floor(5 x b / 7) + 1 = 1, 1, 2, 3, 3, 4, 5.
    seed([Row(days_ago=10 - n, orders=n + 1, cents=100) for n in range(7)])
    refresh()
    assert [s[1] for s in scores()] == [1, 1, 2, 3, 3, 4, 5]
    assert [s[0] for s in scores()] == [1, 1, 2, 3, 3, 4, 5]


def test_equal_values_get_equal_scores(database: Database) -> None:
    # Orders 1 x6, 2 x2, 3, 5: the ones rank 1 (score 1); the twos have 6 below: 1 + 30 // 10;
    # three has 8 below: 1 + 40 // 10; five has 9 below: 1 + 45 // 10.
    orders = [1, 1, 1, 1, 1, 1, 2, 2, 3, 5]
    # Customers 3 and 4 ordered at the same moment, across the 2/3 boundary: both have three
    # customers before them, 1 + 15 // 10 = 2 (customer 5 has five before it: 3).
    days = [9, 8, 7, 6, 6, 4, 3, 2, 1, 0]
    seed([Row(days_ago=d, orders=o, cents=2500) for d, o in zip(days, orders, strict=True)])
    refresh()
    assert [s[1] for s in scores()] == [1, 1, 1, 1, 1, 1, 4, 4, 5, 5]
    assert [s[0] for s in scores()] == [1, 1, 2, 2, 2, 3, 4, 4, 5, 5]
    assert [s[2] for s in scores()] == [1] * 10  # everyone spent the same


def test_tied_customers_at_a_boundary_take_the_lower_score(database: Database) -> None:
    # Values 1, 2, 3, 3, 4 have 0, 1, 2, 2, 4 of 5 below them: scores 1, 2, 3, 3, 5 (no 4).
    # Breaking the tie by id would have given 1, 2, 3, 4, 5.
    seed([Row(days_ago=1, orders=o, cents=100) for o in [1, 2, 3, 3, 4]])
    refresh()
    assert [s[1] for s in scores()] == [1, 2, 3, 3, 5]


def test_customers_without_orders_have_no_scores(database: Database) -> None:
    seed(
        [
            Row(days_ago=None, orders=0, cents=0),
            Row(days_ago=None, orders=0, cents=0, stale=(3, 3, 3)),  # scored before, e.g. a merge
            Row(days_ago=5, orders=1, cents=1000),
            Row(days_ago=50, orders=2, cents=500),
        ]
    )
    # Two scored customers: the lower has none below (1), the higher one of two: 1 + 5 // 2.
    assert refresh() == 3
    assert scores() == [(None, None, None), (None, None, None), (3, 1, 3), (1, 3, 1)]


def test_refunded_customers_keep_the_scores_their_facts_give(database: Database) -> None:
    seed([Row(days_ago=1, orders=2, cents=0), Row(days_ago=2, orders=1, cents=100)])
    with session_scope() as session:
        facts = session.get(CustomerFacts, _id(0))
        assert facts is not None
        facts.refunds_count, facts.refunded_total_cents = 2, 9000
    refresh()
    assert scores() == [(3, 3, 1), (1, 1, 3)]


def test_a_second_refresh_changes_nothing_and_counts_only_changes(database: Database) -> None:
    seed([Row(days_ago=n, orders=n + 1, cents=(10 - n) * 100) for n in range(10)])
    assert refresh() == 10
    before = scores()
    assert refresh() == 0
    assert scores() == before
    with session_scope() as session:  # customer 9 (oldest, most orders) orders again now
        facts = session.get(CustomerFacts, _id(9))
        assert facts is not None
        facts.last_order_at, facts.orders_count = NOW, 11
    # Recency: 9 ties with 0 at the top (8 below: 5); 1..8 move one place down, so 1, 3, 5
    # and 7 cross a boundary (5 -> 4, 4 -> 3, 3 -> 2, 2 -> 1); frequency and monetary keep.
    assert refresh() == 5
    assert [s[0] for s in scores()] == [5, 4, 4, 3, 3, 2, 2, 1, 1, 5]
    assert [s[1:] for s in scores()] == [s[1:] for s in before]


def test_random_facts_match_a_reference_ranking(database: Database) -> None:
    rng = random.Random(20260302)
    rows = [
        Row(days_ago=rng.randrange(30), orders=rng.randrange(0, 6), cents=rng.randrange(8) * 500)
        for _ in range(120)
    ]
    rows = [r if r.orders else Row(days_ago=None, orders=0, cents=0) for r in rows]
    seed(rows)
    refresh()
    scored = [r for r in rows if r.orders]
    assert scores() == [_reference(r, scored) for r in rows]
    per_score = [sum(1 for s in scores() if s[0] == k) for k in range(1, 6)]
    assert all(count > 0 for count in per_score)


def _reference(row: Row, scored: Sequence[Row]) -> Scores:
    if not row.orders:
        return (None, None, None)

    def score(value: int, values: Sequence[int]) -> int:
        return 1 + 5 * sum(1 for v in values if v < value) // len(values)

    assert row.days_ago is not None
    recency = score(-row.days_ago, [-(r.days_ago or 0) for r in scored])
    return (
        recency,
        score(row.orders, [r.orders for r in scored]),
        score(row.cents, [r.cents for r in scored]),
    )
