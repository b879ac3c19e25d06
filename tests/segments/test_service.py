"""Segments kept live on both databases: compute as a diff, re-evaluation on ingestion, the
time sweep with a moved clock, history and timeline events, merges and erasures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from regulars.customers import service as customers
from regulars.customers.models import Event
from regulars.db import Database, session_scope
from regulars.errors import Conflict, ValidationFailed
from regulars.kit import clock
from regulars.kit.clock import FrozenClock
from regulars.segments import membership, repository, service
from regulars.segments import tasks as segment_tasks
from regulars.segments.models import (
    Segment,
    SegmentCount,
    SegmentCountChange,
    SegmentMembershipSpan,
)
from regulars.segments.schemas import SegmentCreate, SegmentUpdate
from tests.customers.helpers import ingest, owner_of

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)

BUYERS = {"type": "event", "name": "Order Completed"}
RECENT_BUYERS = {
    "type": "event",
    "name": "Order Completed",
    "window": {"last": {"amount": 7, "unit": "days"}},
}
ABANDONED_CHECKOUT = {
    "type": "absence",
    "name": "Checkout Started",
    "then_not": {"name": "Order Completed"},
    "within": {"amount": 1, "unit": "hours"},
}
BERLIN = {"type": "profile", "field": "traits.city", "op": "equals", "value": "Berlin"}


@pytest.fixture
def moved_clock(database: Database) -> Iterator[FrozenClock]:
    with clock.frozen(T0) as frozen:
        yield frozen


def save(key: str, rule: dict[str, Any]) -> None:
    with session_scope() as session:
        service.create(session, SegmentCreate(key=key, name=key.title(), rule=rule))
        service.compute(session, key)


def members(key: str) -> set[str]:
    with session_scope(readonly=True) as session:
        page = service.members(session, key, cursor=None, limit=200)
    return {m.customer_id for m in page.items}


def count_of(key: str) -> int:
    """The count every reader shows: the folded count plus the changes appended since."""
    with session_scope(readonly=True) as session:
        return service.segment_read(session, service.require(session, key)).members_count


def folded_count_of(key: str) -> tuple[int, int]:
    """(segments.members_count, count changes not folded yet) of one segment."""
    with session_scope(readonly=True) as session:
        segment = session.scalars(select(Segment).where(Segment.key == key)).one()
        pending = session.scalars(
            select(SegmentCountChange.delta).where(SegmentCountChange.segment_id == segment.id)
        ).all()
        return segment.members_count, len(pending)


def track(user: str, event: str, *, at: datetime, message_id: str, **props: Any) -> None:
    result = ingest(
        [
            {
                "type": "track",
                "userId": user,
                "event": event,
                "properties": props,
                "timestamp": at.isoformat(),
                "messageId": message_id,
            }
        ]
    )
    assert result.accepted == 1, result.rejected


def identify(user: str, *, at: datetime, **traits: Any) -> str:
    result = ingest(
        [
            {
                "type": "identify",
                "userId": user,
                "traits": traits,
                "timestamp": at.isoformat(),
                "messageId": f"identify-{user}-{at.isoformat()}-{sorted(traits.items())}",
            }
        ]
    )
    assert result.accepted == 1, result.rejected
    owner = owner_of(user)
    assert owner is not None
    return owner


def system_events(customer_id: str) -> list[tuple[str, str]]:
    with session_scope(readonly=True) as session:
        rows = session.execute(
            select(Event.name, Event.properties)
            .where(Event.customer_id == customer_id, Event.type == "system")
            .order_by(Event.id)
        ).all()
    return [(name, properties["segment_key"]) for name, properties in rows]


def test_an_order_brings_a_customer_into_a_live_segment_in_the_same_write(
    moved_clock: FrozenClock,
) -> None:
    ada = identify("ada", at=T0, city="Berlin")
    save("buyers", BUYERS)
    assert members("buyers") == set()

    track("ada", "Order Completed", at=T0, message_id="o1", revenue=30)

    assert members("buyers") == {ada}
    assert count_of("buyers") == 1
    assert system_events(ada) == [("segment.entered", "buyers")]


def test_live_counts_are_appended_then_folded_once_by_the_sweep(
    moved_clock: FrozenClock,
) -> None:
    for user in ("ada", "bob", "cy"):
        identify(user, at=T0)
    save("buyers", BUYERS)
    assert folded_count_of("buyers") == (0, 0)

    track("ada", "Order Completed", at=T0, message_id="o1")
    track("bob", "Order Completed", at=T0, message_id="o2")
    # Two ingested writes, two appended changes; the segment row itself is left alone.
    assert folded_count_of("buyers") == (0, 2)
    assert count_of("buyers") == 2

    with session_scope() as session:
        service.sweep(session)
    assert folded_count_of("buyers") == (2, 0)
    with session_scope() as session:
        service.sweep(session)  # nothing left to fold: folding twice adds nothing
    assert folded_count_of("buyers") == (2, 0)

    track("cy", "Order Completed", at=T0, message_id="o3")
    assert (count_of("buyers"), folded_count_of("buyers")) == (3, (2, 1))
    with session_scope() as session:
        service.compute(session, "buyers")
    # A full compute counts the members itself; the change it already counted goes.
    assert folded_count_of("buyers") == (3, 0)


if os.environ.get("REGULARS_TEST_DATABASE_URL"):  # exists only where PostgreSQL does

    @pytest.mark.parametrize("backend", ["postgresql"])
    def test_two_open_writes_moving_one_segment_never_wait_for_each_other(
        database: Database, moved_clock: FrozenClock
    ) -> None:
        save("buyers", BUYERS)
        with session_scope(readonly=True) as session:
            segment_id = service.require(session, "buyers").id
        with database.session() as first, database.session() as second:
            repository.add_to_counts(first, {segment_id: 1})  # first stays open, uncommitted
            # Were the count an update of the segment row, this would queue on first's lock
            # and give up after the timeout.
            second.execute(text("SET LOCAL lock_timeout = '2s'"))
            repository.add_to_counts(second, {segment_id: 1})
        assert count_of("buyers") == 2


def test_an_event_a_segment_does_not_read_leaves_it_alone(moved_clock: FrozenClock) -> None:
    identify("ada", at=T0)
    save("buyers", BUYERS)
    track("ada", "Product Viewed", at=T0, message_id="v1")
    assert members("buyers") == set()


def test_a_segment_saved_after_the_index_was_cached_is_live_from_the_next_event(
    moved_clock: FrozenClock,
) -> None:
    """The index of what each segment reads is cached per process and checked against the
    segments' version in the same round trip as the customers' rows."""
    bob = identify("bob", at=T0)
    save("buyers", BUYERS)
    track("ada", "Order Completed", at=T0, message_id="o1")  # the index of "buyers" cached
    save("viewers", {"type": "event", "name": "Product Viewed"})

    track("bob", "Product Viewed", at=T0, message_id="v1")  # the cached index reads no views

    assert members("viewers") == {bob}
    assert members("buyers") == {owner_of("ada")}


def test_a_segment_edited_after_the_index_was_cached_is_checked_with_its_new_rule(
    moved_clock: FrozenClock,
) -> None:
    identify("ada", at=T0, city="Berlin")
    identify("bob", at=T0, city="Paris")
    save("buyers", BUYERS)
    track("ada", "Order Completed", at=T0, message_id="o1")
    moved_clock.advance(timedelta(seconds=1))  # an edit is stamped with its own time
    with session_scope() as session:
        service.update(
            session, "buyers", SegmentUpdate(rule={"type": "and", "rules": [BUYERS, BERLIN]})
        )

    track("bob", "Order Completed", at=T0, message_id="o2")

    assert members("buyers") == {owner_of("ada")}


def test_a_segment_deleted_after_the_index_was_cached_is_left_alone(
    moved_clock: FrozenClock,
) -> None:
    save("buyers", BUYERS)
    save("big_buyers", {"type": "event", "name": "Order Completed", "op": "gte", "value": 2})
    track("ada", "Order Completed", at=T0, message_id="o1")
    with session_scope() as session:
        service.delete(session, "buyers")

    track("bob", "Order Completed", at=T0, message_id="o2")
    track("bob", "Order Completed", at=T0, message_id="o3")

    assert members("big_buyers") == {owner_of("bob")}
    with session_scope(readonly=True) as session:
        assert service.find(session, "buyers") is None
        assert system_events(str(owner_of("bob"))) == [("segment.entered", "big_buyers")]


def test_a_new_anonymous_visitor_enters_a_segment_of_customers_who_never_ordered(
    moved_clock: FrozenClock,
) -> None:
    save("never_ordered", {"type": "not", "rule": BUYERS})
    result = ingest(
        [
            {
                "type": "page",
                "anonymousId": "visitor-1",
                "name": "Home",
                "messageId": "p1",
                "timestamp": T0.isoformat(),
            }
        ]
    )
    assert result.accepted == 1
    assert len(members("never_ordered")) == 1


def test_a_trait_change_moves_a_customer_out_and_the_history_keeps_the_stay(
    moved_clock: FrozenClock,
) -> None:
    ada = identify("ada", at=T0, city="Berlin")
    save("berliners", BERLIN)
    assert members("berliners") == {ada}

    moved_clock.advance(timedelta(hours=1))
    identify("ada", at=T0 + timedelta(hours=1), city="Hamburg")

    assert members("berliners") == set()
    with session_scope(readonly=True) as session:
        history = service.history_of(session, ada, cursor=None, limit=10)
    assert [(h.key, h.entered_at, h.exited_at) for h in history.items] == [
        ("berliners", T0, T0 + timedelta(hours=1))
    ]
    assert system_events(ada) == [("segment.entered", "berliners"), ("segment.exited", "berliners")]


def test_recompute_writes_only_the_difference(moved_clock: FrozenClock) -> None:
    ada = identify("ada", at=T0, city="Berlin")
    save("berliners", BERLIN)
    with session_scope() as session:
        again = service.compute(session, "berliners")
    assert (again.members, again.entered, again.exited) == (1, 0, 0)
    assert system_events(ada) == [("segment.entered", "berliners")]


def a_recent_buyer() -> str:
    """Ada, who ordered at T0, in the segment of those who ordered in the last 7 days."""
    ada = identify("ada", at=T0)
    track("ada", "Order Completed", at=T0, message_id="o1")
    save("recent_buyers", RECENT_BUYERS)
    return ada


def test_the_sweep_lets_a_customer_drop_out_when_the_window_passes(
    moved_clock: FrozenClock,
) -> None:
    ada = a_recent_buyer()
    assert members("recent_buyers") == {ada}

    # Just before the order leaves the 7-day window: still in.
    moved_clock.set(T0 + timedelta(days=7) - timedelta(seconds=1))
    with session_scope() as session:
        service.sweep(session)
    assert members("recent_buyers") == {ada}

    # The next sweep, a minute later, finds the order past the edge.
    moved_clock.set(T0 + timedelta(days=7, minutes=1))
    with session_scope() as session:
        changed = service.sweep(session)
    assert members("recent_buyers") == set()
    assert changed.get("recent_buyers") == 1
    with session_scope(readonly=True) as session:
        days = session.execute(
            select(SegmentCount.day, SegmentCount.members_count)
            .join(Segment, Segment.id == SegmentCount.segment_id)
            .where(Segment.key == "recent_buyers")
        ).all()
    # The trend line: 1 member on the day it was computed, 0 on the day the sweep saw it go.
    assert sorted((day, n) for day, n in days) == [("2026-05-04", 1), ("2026-05-11", 0)]


def test_the_workers_sweep_plans_by_reading_then_writes_each_segment_on_its_own(
    moved_clock: FrozenClock,
) -> None:
    ada = a_recent_buyer()
    save("recent_orders", RECENT_BUYERS)
    moved_clock.set(T0 + timedelta(days=7, minutes=1))

    with session_scope(readonly=True) as session:
        plan = service.plan_sweep(session, now=clock.now())
    planned = {(step.segment_key, step.compute, step.crossers) for step in plan.steps}
    crossed = frozenset({ada})
    assert planned == {("recent_buyers", False, crossed), ("recent_orders", False, crossed)}
    assert members("recent_buyers") == {ada}  # planning wrote nothing

    # A segment deleted between the plan and its step is left alone.
    with session_scope() as session:
        service.delete(session, "recent_orders")
        (orders_step,) = [s for s in plan.steps if s.segment_key == "recent_orders"]
        assert service.run_sweep_step(session, orders_step, now=clock.now()) == 0

    segment_tasks.sweep({})
    assert members("recent_buyers") == set()
    with session_scope(readonly=True) as session:
        assert service.plan_sweep(session, now=clock.now()).steps == ()  # swept up to now


def test_an_abandoned_checkout_counts_only_once_the_hour_is_up(moved_clock: FrozenClock) -> None:
    ada = identify("ada", at=T0)
    save("abandoners", ABANDONED_CHECKOUT)
    track("ada", "Checkout Started", at=T0, message_id="c1")
    assert members("abandoners") == set()  # the hour has not passed

    moved_clock.set(T0 + timedelta(minutes=61))
    with session_scope() as session:
        service.sweep(session)
    assert members("abandoners") == {ada}

    # Buying later does not change the past hour: still an abandoned checkout.
    track("ada", "Order Completed", at=T0 + timedelta(minutes=61), message_id="o1")
    assert members("abandoners") == {ada}


def test_an_order_within_the_hour_keeps_the_checkout_out_of_the_abandoned_segment(
    moved_clock: FrozenClock,
) -> None:
    identify("ada", at=T0)
    bob = identify("bob", at=T0)
    save("abandoners", ABANDONED_CHECKOUT)
    track("ada", "Checkout Started", at=T0, message_id="c1")
    track("bob", "Checkout Started", at=T0, message_id="c2")
    track("ada", "Order Completed", at=T0 + timedelta(minutes=30), message_id="o1")

    # The sweep re-checks both once the hour is up, reading the order that ended Ada's wait.
    moved_clock.set(T0 + timedelta(minutes=61))
    with session_scope() as session:
        service.sweep(session)
    assert members("abandoners") == {bob}


def test_one_batch_re_checks_each_customer_for_what_their_own_change_woke(
    moved_clock: FrozenClock,
) -> None:
    ada, bob = identify("ada", at=T0), identify("bob", at=T0)
    save("buyers", BUYERS)
    save("berliners", BERLIN)
    result = ingest(
        [
            {"type": "track", "userId": "ada", "event": "Order Completed", "messageId": "o1"},
            {"type": "identify", "userId": "bob", "traits": {"city": "Berlin"}, "messageId": "i1"},
        ]
    )
    assert result.accepted == 2, result.rejected
    assert (members("buyers"), members("berliners")) == ({ada}, {bob})
    assert (count_of("buyers"), count_of("berliners")) == (1, 1)
    assert system_events(ada) == [("segment.entered", "buyers")]
    assert system_events(bob) == [("segment.entered", "berliners")]


def test_a_segment_of_segments_follows_the_segment_it_reads(moved_clock: FrozenClock) -> None:
    ada = identify("ada", at=T0, city="Berlin")
    save("berliners", BERLIN)
    save(
        "berlin_buyers",
        {"type": "and", "rules": [{"type": "segment", "segment": "berliners"}, BUYERS]},
    )
    track("ada", "Order Completed", at=T0, message_id="o1")
    assert members("berlin_buyers") == {ada}

    identify("ada", at=T0 + timedelta(hours=1), city="Paris")
    assert members("berliners") == set()
    assert members("berlin_buyers") == set()


def test_cycles_and_unknown_references_are_refused(moved_clock: FrozenClock) -> None:
    save("a", {"type": "profile", "field": "email", "op": "exists"})
    save("b", {"type": "segment", "segment": "a"})
    with session_scope() as session, pytest.raises(ValidationFailed) as cycle:
        service.update(session, "a", SegmentUpdate(rule={"type": "segment", "segment": "b"}))
    assert cycle.value.code == "segment_cycle"
    assert cycle.value.details == {"cycle": ["a", "b", "a"]}
    with session_scope() as session, pytest.raises(ValidationFailed) as unknown:
        service.create(
            session,
            SegmentCreate(key="c", name="C", rule={"type": "segment", "segment": "nope"}),
        )
    assert unknown.value.details == {"unknown_segments": ["nope"]}
    with session_scope() as session, pytest.raises(Conflict):
        service.delete(session, "a")  # b refers to it


def test_a_bad_rule_is_refused_with_the_path_of_the_bad_node(database: Database) -> None:
    rule = {"type": "and", "rules": [BERLIN, {"type": "fact", "field": "orders", "op": "gt"}]}
    with session_scope() as session, pytest.raises(ValidationFailed) as invalid:
        service.create(session, SegmentCreate(key="bad", name="Bad", rule=rule))
    assert invalid.value.code == "invalid_rule"
    assert invalid.value.details[0]["path"] == "rule.rules.1"
    assert "unknown fact 'orders'" in invalid.value.details[0]["message"]


def test_a_merge_moves_history_to_the_survivor_and_keeps_counts_right(
    moved_clock: FrozenClock,
) -> None:
    save("buyers", BUYERS)
    result = ingest(
        [
            {
                "type": "track",
                "anonymousId": "device-1",
                "event": "Order Completed",
                "messageId": "o1",
                "timestamp": T0.isoformat(),
            }
        ]
    )
    assert result.accepted == 1
    assert count_of("buyers") == 1
    ada = identify("ada", at=T0 + timedelta(minutes=1))  # another profile, not a buyer
    assert count_of("buyers") == 1

    moved_clock.advance(timedelta(minutes=2))
    ingest(
        [
            {
                "type": "alias",
                "userId": "ada",
                "previousId": "device-1",
                "messageId": "a1",
                "timestamp": (T0 + timedelta(minutes=2)).isoformat(),
            }
        ]
    )
    assert members("buyers") == {ada}
    assert count_of("buyers") == 1
    with session_scope(readonly=True) as session:
        stays = session.scalars(select(SegmentMembershipSpan)).all()
    assert {s.customer_id for s in stays} == {ada}


def test_an_erased_customer_leaves_every_segment_and_its_count(moved_clock: FrozenClock) -> None:
    ada = identify("ada", at=T0, city="Berlin")
    save("berliners", BERLIN)
    assert count_of("berliners") == 1
    with session_scope() as session:
        customers.erase(session, ada, requested_by="test", at=T0)
    assert count_of("berliners") == 0
    assert members("berliners") == set()


def test_explain_says_why_with_what_it_found(moved_clock: FrozenClock) -> None:
    ada = identify("ada", at=T0, city="Hamburg")
    track("ada", "Order Completed", at=T0, message_id="o1")
    save("berlin_buyers", {"type": "and", "rules": [BERLIN, BUYERS]})
    with session_scope(readonly=True) as session:
        why = service.explain(session, ada, key_or_id="berlin_buyers")
    assert (why.holds, why.member) == (False, False)
    assert [(n.path, n.holds) for n in why.nodes] == [
        ("", False),
        ("rules.0", False),
        ("rules.1", True),
    ]
    assert why.nodes[1].measured == "Hamburg"
    assert "traits.city is 'Berlin'" in why.nodes[1].says
    assert why.nodes[2].measured == 1


def test_built_in_segments_are_installed_by_the_sweep_and_cannot_be_edited(
    moved_clock: FrozenClock,
) -> None:
    with session_scope() as session:
        service.sweep(session)
        keys = {s.key for s in service.list_page(session, cursor=None, limit=200).items}
    assert {"lifecycle_new", "rfm_champions"} <= keys
    with session_scope() as session, pytest.raises(Conflict):
        service.update(session, "rfm_champions", SegmentUpdate(name="Mine"))


def test_a_birthday_segment_flips_at_local_midnight_in_each_customers_zone(
    moved_clock: FrozenClock,
) -> None:
    berlin = identify("berlin", at=T0, birthday="1990-05-06", timezone="Europe/Berlin")
    utc = identify("utc", at=T0, birthday="1990-05-06")
    save(
        "birthday-soon",
        {
            "type": "profile",
            "field": "traits.birthday",
            "op": "anniversary_within",
            "value": {"amount": 1, "unit": "days"},
        },
    )
    assert members("birthday-soon") == set()  # 4 May: the 6th is two days away everywhere

    # 22:30 UTC on 4 May is 00:30 on 5 May in Berlin (UTC+2): the birthday is tomorrow there.
    moved_clock.set(datetime(2026, 5, 4, 22, 30, tzinfo=UTC))
    with session_scope() as session:
        service.sweep(session)
    assert members("birthday-soon") == {berlin}

    moved_clock.set(datetime(2026, 5, 5, 0, 0, 30, tzinfo=UTC))
    with session_scope() as session:
        service.sweep(session)
    assert members("birthday-soon") == {berlin, utc}


def test_many_customers_at_once_are_re_evaluated_in_sql_with_the_same_outcome(
    moved_clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(membership, "PYTHON_EVALUATION_MAX", 0)  # as for a big sweep
    ada = identify("ada", at=T0, city="Berlin")
    save("berlin_buyers", {"type": "and", "rules": [BERLIN, BUYERS]})
    track("ada", "Order Completed", at=T0, message_id="o1")
    assert members("berlin_buyers") == {ada}
    identify("ada", at=T0 + timedelta(minutes=1), city="Rome")
    assert members("berlin_buyers") == set()


@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL plans from statistics instead
def test_closing_a_stay_looks_up_the_customer_not_every_stay_of_the_segment(
    database: Database,
) -> None:
    """Live re-evaluation closes a leaver's open stay; found through the segment, it walked
    all of a popular segment's history on every exit. A customer has a few stays."""
    closing = (
        "UPDATE segment_membership_history SET exited_at = :at WHERE segment_id = :segment"
        " AND customer_id IN (:a, :b) AND exited_at IS NULL"
    )
    params = {"at": "2026-01-01", "segment": "s", "a": "c1", "b": "c2"}
    with session_scope(readonly=True) as session:
        plan = [row[-1] for row in session.execute(text("EXPLAIN QUERY PLAN " + closing), params)]
    assert plan == [
        "SEARCH segment_membership_history USING INDEX ix_segment_history_customer (customer_id=?)"
    ]
