"""Entry rules and triggers: who starts a run, when, and how often."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from regulars.db import session_scope
from regulars.errors import Conflict
from regulars.journeys import service as journeys
from regulars.journeys.models import Journey, JourneyRun, RunState
from regulars.journeys.schemas import RunCreate
from regulars.kit import clock
from regulars.segments import service as segments
from regulars.segments.schemas import SegmentCreate
from tests.journeys.conftest import JourneyFactory, Track, run_worker
from tests.messages.conftest import T0, CustomerFactory, TemplateFactory


def _runs(key: str | None = None) -> list[JourneyRun]:
    with session_scope() as session:
        query = select(JourneyRun).order_by(JourneyRun.entered_at, JourneyRun.id)
        if key is not None:
            journey_id = select(Journey.id).where(Journey.key == key).scalar_subquery()
            query = query.where(JourneyRun.journey_id == journey_id)
        return list(session.scalars(query))


def _waiting(trigger: Mapping[str, object], **entry: object) -> dict[str, object]:
    """A journey whose only node waits a week: runs stay in flight."""
    return {
        "trigger": trigger,
        "entry": entry,
        "start": "pause",
        "nodes": {"pause": {"type": "delay", "duration": "7d"}},
    }


VIEWED = {"type": "event", "event": "Product Viewed", "where": {"category": "espresso"}}


def test_event_trigger_with_a_property_filter_starts_one_run_in_flight(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    track: Track,
) -> None:
    journey("browse", _waiting(VIEWED))
    customer("ann")
    track("ann", "Product Viewed", {"category": "filter"})
    assert _runs() == []
    track("ann", "Product Viewed", {"category": "espresso"})
    track("ann", "Product Viewed", {"category": "espresso"})
    (run,) = _runs()
    assert run.trigger["properties"] == {"category": "espresso"}
    assert run.state == RunState.ACTIVE and run.due_at == T0


def test_reentry_never_keeps_a_customer_out_after_the_first_run_ended(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    track: Track,
) -> None:
    journey("once", _waiting(VIEWED, reentry="never"))
    customer("ann")
    track("ann", "Product Viewed", {"category": "espresso"})
    frozen_clock.advance(timedelta(days=8))
    run_worker()
    assert [r.state for r in _runs()] == [RunState.COMPLETED]
    track("ann", "Product Viewed", {"category": "espresso"})
    assert len(_runs()) == 1


def test_reentry_after_exit_and_with_a_minimum_interval(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    track: Track,
) -> None:
    journey("again", _waiting(VIEWED))
    journey(
        "spaced",
        _waiting(VIEWED, reentry="interval", min_interval="30d") | {"start": "pause"},
    )
    customer("ann")
    track("ann", "Product Viewed", {"category": "espresso"})
    frozen_clock.advance(timedelta(days=8))
    run_worker()
    track("ann", "Product Viewed", {"category": "espresso"})
    assert len(_runs("again")) == 2  # after exit: the first had ended
    assert len(_runs("spaced")) == 1  # 8 days < 30 days since the last entry
    frozen_clock.advance(timedelta(days=23))
    run_worker()
    track("ann", "Product Viewed", {"category": "espresso"})
    assert len(_runs("spaced")) == 2


def test_entry_key_gives_one_run_per_order_and_caps_concurrent_runs(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    track: Track,
) -> None:
    shipped = {"type": "event", "event": "Order Shipped"}
    journey("orders", _waiting(shipped, key="order_id", max_concurrent=2))
    customer("ann")
    for order in ("o1", "o1", "o2", "o3"):
        track("ann", "Order Shipped", {"order_id": order})
    assert sorted(r.entry_key for r in _runs()) == ["o1", "o2"]


def test_throttle_refuses_entries_over_the_hourly_limit_and_counts_them(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    track: Track,
) -> None:
    journey("limited", _waiting(VIEWED, per_hour=2))
    for name in ("a", "b", "c"):
        customer(name)
        track(name, "Product Viewed", {"category": "espresso"})
    assert len(_runs()) == 2
    with session_scope() as session:
        stats = journeys.stats_of(session, "limited")
    assert stats.throttled == 1
    frozen_clock.advance(timedelta(minutes=61))
    customer("d")
    track("d", "Product Viewed", {"category": "espresso"})
    assert len(_runs()) == 3


def test_segment_entered_trigger_starts_a_run(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    track: Track,
) -> None:
    with session_scope() as session:
        segments.create(
            session,
            SegmentCreate(
                key="espresso-fans",
                name="Espresso fans",
                rule={"type": "event", "name": "Product Viewed", "op": "gte", "value": 2},
            ),
        )
    journey("fans", _waiting({"type": "segment", "segment": "espresso-fans"}))
    customer("ann")
    track("ann", "Product Viewed", {"category": "espresso"})
    assert _runs() == []
    track("ann", "Product Viewed", {"category": "espresso"})
    (run,) = _runs()
    assert run.trigger["event"] == "segment.entered"
    assert run.trigger["properties"]["segment_key"] == "espresso-fans"


def test_event_date_trigger_starts_a_day_before_the_appointment(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    template: TemplateFactory,
    track: Track,
) -> None:
    template("reminder", "email")
    journey(
        "reminder",
        {
            "trigger": {
                "type": "event_date",
                "event": "Appointment Booked",
                "property": "start",
                "offset": "-24h",
            },
            "start": "send",
            "nodes": {"send": {"type": "send", "template": "reminder"}},
        },
    )
    customer("ann", email="ann@example.com", consents={"email": "subscribed"})
    start = T0 + timedelta(days=3)
    track("ann", "Appointment Booked", {"start": start.isoformat()})
    (run,) = _runs()
    assert run.state == RunState.WAITING and run.due_at == start - timedelta(hours=24)
    frozen_clock.set(start - timedelta(hours=24, minutes=1))
    run_worker()
    assert _runs()[0].state == RunState.WAITING
    frozen_clock.set(start - timedelta(hours=24))
    run_worker()
    assert _runs()[0].state == RunState.COMPLETED


def test_api_start_refused_by_entry_rules_is_a_conflict(
    frozen_clock: clock.FrozenClock, journey: JourneyFactory, customer: CustomerFactory
) -> None:
    journey("manual", _waiting({"type": "api"}))
    ann = customer("ann")
    with session_scope() as session:
        run = journeys.start_run(session, "manual", RunCreate(customer_id=ann, properties={"x": 1}))
    assert run.trigger["event"] == "api" and run.trigger["properties"] == {"x": 1}
    with pytest.raises(Conflict, match="entry rules"), session_scope() as session:
        journeys.start_run(session, "manual", RunCreate(customer_id=ann))


def test_schedule_trigger_enrolls_the_whole_segment_once_per_day(
    frozen_clock: clock.FrozenClock, journey: JourneyFactory, customer: CustomerFactory
) -> None:
    for name in ("a", "b"):
        customer(name, traits={"plan": "gold"})
    customer("c", traits={"plan": "free"})
    with session_scope() as session:
        segments.create(
            session,
            SegmentCreate(
                key="gold",
                name="Gold",
                rule={"type": "profile", "field": "traits.plan", "op": "equals", "value": "gold"},
            ),
        )
        segments.compute(session, "gold")
    definition = _waiting(
        {"type": "schedule", "segment": "gold", "daily_at": "09:00", "timezone": "Europe/Berlin"}
    ) | {"nodes": {"pause": {"type": "delay", "duration": "1h"}}}
    journey("daily", definition)  # published at 11:00 Berlin: today's 09:00 has passed
    with session_scope() as session:
        assert journeys.enroll_scheduled(session, now=clock.now()) == 0
    frozen_clock.set(datetime(2026, 3, 3, 7, 59, tzinfo=UTC))  # 08:59 Berlin
    with session_scope() as session:
        assert journeys.enroll_scheduled(session, now=clock.now()) == 0
    frozen_clock.set(datetime(2026, 3, 3, 8, 0, tzinfo=UTC))  # 09:00 Berlin
    with session_scope() as session:
        assert journeys.enroll_scheduled(session, now=clock.now()) == 2
    with session_scope() as session:
        assert journeys.enroll_scheduled(session, now=clock.now()) == 0  # once per moment
    assert len(_runs()) == 2


def test_birthday_runs_start_at_nine_on_each_customers_own_clock(
    frozen_clock: clock.FrozenClock, journey: JourneyFactory, customer: CustomerFactory
) -> None:
    # T0 is Monday 2 March 2026, 10:00 UTC.
    customer("tokyo", timezone="Asia/Tokyo", traits={"birthday": "1990-03-02"})
    customer("la", timezone="America/Los_Angeles", traits={"birthday": "1985-03-02"})
    customer("other", timezone="Europe/Berlin", traits={"birthday": "1985-03-04"})
    journey("birthday", _waiting({"type": "anniversary", "trait": "birthday", "at": "09:00"}))
    with session_scope() as session:
        journeys.enroll_scheduled(session, now=clock.now())
    runs = {r.customer_id: r for r in _runs()}
    # Tokyo: 2 March 19:00 local; today is the birthday; 09:00 local was 00:00 UTC.
    # Los Angeles: 2 March 02:00 local; the birthday starts at 09:00 local = 17:00 UTC.
    assert sorted(r.due_at for r in runs.values() if r.due_at is not None) == [
        datetime(2026, 3, 2, 0, 0, tzinfo=UTC),
        datetime(2026, 3, 2, 17, 0, tzinfo=UTC),
    ]
    frozen_clock.advance(timedelta(hours=2))
    with session_scope() as session:
        journeys.enroll_scheduled(session, now=clock.now())
    assert len(_runs()) == 2  # one run per customer and year
