"""Runs moving through journeys on the worker: sends, waits, exits, goals."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from regulars.customers import service as customers
from regulars.db import session_scope
from regulars.journeys.models import Journey, JourneyRun, JourneyStep, RunState
from regulars.kit import clock
from regulars.messages.models import Delivery
from tests.journeys.conftest import JourneyFactory, Track, run_worker
from tests.messages.conftest import CustomerFactory, TemplateFactory

CART = {
    "trigger": {"type": "event", "event": "Checkout Started"},
    "entry": {"key": "checkout_id"},
    "exit": [{"type": "event", "event": "Order Completed", "match": ["checkout_id"]}],
    "goal": {"event": "Order Completed", "within": "3d"},
    "start": "wait",
    "nodes": {
        "wait": {
            "type": "wait",
            "event": "Order Completed",
            "match": ["checkout_id"],
            "timeout": "1h",
            "timeout_next": "remind",
        },
        "remind": {"type": "send", "template": "cart", "channel": "email"},
    },
}


def _runs() -> list[JourneyRun]:
    with session_scope() as session:
        return list(session.scalars(select(JourneyRun).order_by(JourneyRun.entered_at)))


def _deliveries() -> list[Delivery]:
    with session_scope() as session:
        return list(session.scalars(select(Delivery).where(Delivery.template_key == "cart")))


def test_abandoned_checkout_reminds_after_an_hour_without_an_order(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    template: TemplateFactory,
    track: Track,
) -> None:
    template("cart", "email")
    journey("cart", CART)
    customer("alice", email="alice@example.com", first_name="Alice")
    track("alice", "Checkout Started", {"checkout_id": "c1"})
    run_worker()
    (run,) = _runs()
    assert run.state == RunState.WAITING and run.node_id == "wait"
    assert run.listen_for == "Order Completed"
    assert _deliveries() == []
    frozen_clock.advance(timedelta(minutes=59))
    run_worker()
    assert _deliveries() == []
    frozen_clock.advance(timedelta(minutes=2))
    run_worker()
    (delivery,) = _deliveries()
    assert delivery.channel == "email" and delivery.address == "alice@example.com"
    (run,) = _runs()
    assert run.state == RunState.COMPLETED


def test_order_for_the_same_checkout_ends_the_run_and_counts_the_goal(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    template: TemplateFactory,
    track: Track,
) -> None:
    template("cart", "email")
    journey("cart", CART)
    customer("bob", email="bob@example.com")
    track("bob", "Checkout Started", {"checkout_id": "c1"})
    track("bob", "Checkout Started", {"checkout_id": "c2"})
    run_worker()
    frozen_clock.advance(timedelta(minutes=10))
    track("bob", "Order Completed", {"checkout_id": "c1", "revenue": 42.5})
    run_worker()
    frozen_clock.advance(timedelta(hours=2))
    run_worker()
    runs = {r.entry_key: r for r in _runs()}
    assert runs["c1"].state == RunState.EXITED
    assert runs["c1"].exit_reason == "exit: Order Completed"
    assert runs["c1"].converted_at is not None and runs["c1"].conversion_value == 42.5
    assert runs["c2"].state == RunState.COMPLETED
    assert len(_deliveries()) == 1
    with session_scope() as session:
        steps = list(
            session.scalars(select(JourneyStep).where(JourneyStep.run_id == runs["c1"].id))
        )
    assert [(s.node_id, s.outcome, s.detail) for s in steps] == [
        ("wait", "exit", "exit: Order Completed")
    ]


def test_checkout_and_its_order_in_one_batch_end_the_run_without_a_reminder(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    template: TemplateFactory,
) -> None:
    template("cart", "email")
    journey("cart", CART)
    customer("cara", email="cara@example.com")
    at = clock.now().isoformat()
    batch = [
        {
            "type": "track",
            "userId": "cara",
            "event": name,
            "properties": props,
            "messageId": key,
            "timestamp": at,
        }
        for name, props, key in (
            ("Checkout Started", {"checkout_id": "c9"}, "m1"),
            ("Order Completed", {"checkout_id": "c9", "revenue": 12}, "m2"),
        )
    ]
    with session_scope() as session:
        customers.ingest(session, batch, source="tests")
    (run,) = _runs()
    assert run.state == RunState.EXITED and run.exit_reason == "exit: Order Completed"
    frozen_clock.advance(timedelta(hours=2))
    run_worker()
    assert _deliveries() == []


def test_a_goal_converts_each_run_once_with_the_first_order_in_its_window(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    template: TemplateFactory,
    track: Track,
) -> None:
    template("cart", "email")
    journey("cart", CART)
    customer("cleo", email="cleo@example.com")
    customer("dora", email="dora@example.com")
    track("dora", "Checkout Started", {"checkout_id": "d1"})
    frozen_clock.advance(timedelta(days=3, minutes=1))  # dora's run is out of the 3d window
    track("cleo", "Checkout Started", {"checkout_id": "c1"})
    frozen_clock.advance(timedelta(minutes=1))
    batch = [
        {
            "type": "track",
            "userId": user,
            "event": "Order Completed",
            "properties": {"checkout_id": "another", "revenue": revenue},
            "messageId": key,
            "timestamp": clock.now().isoformat(),
        }
        for user, revenue, key in (("cleo", 30, "o1"), ("cleo", 99, "o2"), ("dora", 50, "o3"))
    ]
    with session_scope() as session:
        assert customers.ingest(session, batch, source="tests").accepted == 3
    runs = {r.entry_key: r for r in _runs()}
    assert runs["c1"].converted_at is not None and runs["c1"].conversion_value == 30
    assert runs["d1"].converted_at is None and runs["d1"].conversion_value is None


def test_one_order_starts_each_journey_it_triggers_by_that_journeys_entry_rules(
    journey: JourneyFactory, customer: CustomerFactory, template: TemplateFactory, track: Track
) -> None:
    template("thanks", "email")
    send = {"thanks": {"type": "send", "template": "thanks"}}
    by_order = {"trigger": {"type": "event", "event": "Order Completed"}, "start": "thanks"}
    journey("per-order", {**by_order, "entry": {"key": "order_id"}, "nodes": send})
    journey("once", {**by_order, "entry": {"reentry": "never"}, "nodes": send})
    customer("emma", email="emma@example.com")
    for order_id in ("o1", "o2", "o1"):
        track("emma", "Order Completed", {"order_id": order_id})
    with session_scope() as session:
        keys = {row.id: row.key for row in session.execute(select(Journey.id, Journey.key))}
    runs = sorted((keys[r.journey_id], r.entry_key) for r in _runs())
    assert runs == [("once", ""), ("per-order", "o1"), ("per-order", "o2")]


def test_a_wait_takes_an_event_that_came_before_the_run_reached_it(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    template: TemplateFactory,
    track: Track,
) -> None:
    template("shipped", "email")
    template("delayed", "email")
    journey(
        "orders",
        {
            "trigger": {"type": "event", "event": "Order Completed"},
            "entry": {"key": "order_id"},
            "start": "shipped",
            "nodes": {
                "shipped": {
                    "type": "wait",
                    "event": "Order Shipped",
                    "match": ["order_id"],
                    "timeout": "3d",
                    "next": "tell",
                    "timeout_next": "late",
                },
                "tell": {"type": "send", "template": "shipped"},
                "late": {"type": "send", "template": "delayed"},
            },
        },
    )
    dan = customer("dan", email="dan@example.com")
    track("dan", "Order Completed", {"order_id": "o1"})
    track("dan", "Order Shipped", {"order_id": "o2", "carrier": "DHL"})  # another order's
    track("dan", "Order Shipped", {"order_id": "o1", "carrier": "UPS"})
    frozen_clock.advance(timedelta(minutes=1))  # the worker moves the run into the wait later
    run_worker()
    with session_scope() as session:
        sent = list(session.scalars(select(Delivery).where(Delivery.customer_id == dan)))
    assert [d.template_key for d in sent] == ["shipped"]
    (run,) = _runs()
    assert run.heard["carrier"] == "UPS" and run.state == RunState.COMPLETED
