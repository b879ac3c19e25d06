"""`regulars simulate` moves the demo store on in simulated time: every blueprint's journey
gets runs, in the states its graph allows, with messages in the sandbox and goals counted."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select

from regulars.customers.models import Event
from regulars.db import Database, session_scope
from regulars.demo import service, simulation
from regulars.journeys import blueprints
from regulars.journeys.models import JourneyRun, JourneyStep
from regulars.kit import clock
from regulars.messages.models import Delivery, DeliveryStatus
from regulars.models import Base
from tests.cli import run_cli

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday morning
STEP = timedelta(hours=4)  # coarser than the command's hour: the same journeys in fewer steps


def _simulate(*, seed: int, customers: int, months: int, days: int) -> int:
    """Load a demo store ending at NOW with every journey live, then simulate `days` as the
    command does, step by step; answer the events stored."""
    with clock.frozen(NOW), session_scope() as session:
        service.load(session, seed=seed, customers=customers, months=months, now=NOW)
        service.install_journeys(session)
    with session_scope(readonly=True) as session:
        moving = simulation.begin(session, seed=seed, days=days, step=STEP, now=NOW)
    worker = simulation.make_worker()
    events = 0
    for at in moving.moments():
        with simulation.at_moment(moving, at):
            with session_scope() as session:
                events += simulation.step(session, moving, at=at).events
            simulation.settle(worker, at=at)
    return events


def _totals() -> dict[str, simulation.JourneyTotals]:
    with session_scope(readonly=True) as session:
        return {t.key: t for t in simulation.totals(session)}


def _states(totals: simulation.JourneyTotals) -> set[str]:
    counts = {
        "in flight": totals.waiting + totals.active,
        "completed": totals.completed,
        "exited": totals.exited - totals.control,
        "control": totals.control,
    }
    return {state for state, count in counts.items() if count}


def test_three_weeks_bring_every_journey_to_life(database: Database) -> None:
    _simulate(seed=3, customers=300, months=4, days=21)

    totals = _totals()
    assert sorted(totals) == blueprints.names()
    assert [key for key, t in totals.items() if not t.runs] == []
    for key in ("abandoned-checkout", "order-updates", "welcome", "cross-sell", "win-back"):
        assert len(_states(totals[key])) >= 3, (key, totals[key])
    assert totals["win-back"].control + totals["abandoned-checkout"].control > 0
    for key in ("abandoned-checkout", "welcome", "cross-sell"):
        assert totals[key].conversions > 0, (key, totals[key])
    _assert_exits_and_reminders()
    _assert_the_events_each_blueprint_expects()
    _assert_sends_go_to_the_sandbox_once_per_step()


def _assert_exits_and_reminders() -> None:
    with session_scope(readonly=True) as session:
        reasons = Counter(
            session.scalars(
                select(JourneyRun.exit_reason).where(JourneyRun.exit_reason.is_not(None))
            )
        )
        templates = Counter(session.scalars(select(Delivery.template_key)))
    assert reasons["exit: Order Completed"] > 0  # abandoned checkouts paid later
    assert reasons["exit: message.unsubscribed"] > 0  # welcome emails unsubscribed from
    assert reasons["holdout"] > 0
    assert templates["checkout_reminder"] > 0
    assert templates["order_shipped"] > 0 and templates["order_delivered"] > 0
    assert templates["pickup_ready"] > 0 and templates["return_requested"] > 0


def _assert_the_events_each_blueprint_expects() -> None:
    with session_scope(readonly=True) as session:
        simulated = list(session.scalars(select(Event).where(Event.message_id.like("sim:%"))))
    by_name: dict[str, list[Event]] = {}
    for event in simulated:
        by_name.setdefault(str(event.name), []).append(event)
    for name in ("Signed Up", "Product Viewed", "Checkout Started", "Order Completed",
                 "Order Shipped", "Order Out for Delivery", "Order Delivered",
                 "Order Ready for Pickup", "Order Picked Up", "Return Requested"):  # fmt: skip
        assert by_name.get(name), name
    assert {e.properties["category"] for e in by_name["Product Viewed"]} >= {"beans", "gear"}
    checkouts = {e.properties["checkout_id"] for e in by_name["Checkout Started"]}
    paid = {e.properties["checkout_id"] for e in by_name["Order Completed"]}
    assert paid <= checkouts
    assert len(checkouts - paid) > len(checkouts) / 4  # a good share is abandoned
    for order in by_name["Order Completed"]:
        assert {"order_id", "revenue", "currency", "products"} <= set(order.properties)
    for shipped in by_name["Order Shipped"]:
        assert {"order_id", "carrier", "tracking_url"} <= set(shipped.properties)
    ordered = {e.properties["order_id"]: e.timestamp for e in by_name["Order Completed"]}
    assert all(ordered[e.properties["order_id"]] < e.timestamp for e in by_name["Order Shipped"])


def _assert_sends_go_to_the_sandbox_once_per_step() -> None:
    with session_scope(readonly=True) as session:
        deliveries = session.execute(
            select(Delivery.idempotency_key, Delivery.provider, Delivery.status).where(
                Delivery.idempotency_key.like("journey:%")
            )
        ).all()
        sends = session.execute(
            select(JourneyStep.run_id, JourneyStep.node_id, JourneyStep.delivery_id).where(
                JourneyStep.delivery_id.is_not(None)
            )
        ).all()
    assert len(deliveries) > 100
    assert {provider for _, provider, _ in deliveries if provider} == {"sandbox"}
    assert Counter(status for _, _, status in deliveries)[DeliveryStatus.DELIVERED] > 0
    assert len(sends) == len(deliveries)
    assert len({(run, node) for run, node, _ in sends}) == len(sends)
    assert len({delivery for _, _, delivery in sends}) == len(sends)


def _empty(database: Database) -> None:
    with database.writer.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(delete(table))


def test_the_same_seed_simulates_the_same_store(database: Database) -> None:
    store = {"seed": 9, "customers": 50, "months": 3, "days": 3}
    first_events = _simulate(**store)
    first = _totals()
    _empty(database)
    with session_scope(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0

    again_events = _simulate(**store)

    assert first_events == again_events > 0
    assert _totals() == first
    assert sum(t.runs for t in first.values()) > 20


def test_simulate_moves_a_loaded_demo_on_and_prints_json(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = ["demo", "--seed", "5", "--customers", "30", "--months", "2", "--simulate-days", "1"]
    assert run_cli(demo, monkeypatch) == 0
    loaded = capsys.readouterr().out
    assert "day  1" in loaded and "abandoned-checkout" in loaded
    with session_scope(readonly=True) as session:
        before = session.scalar(select(func.max(Event.timestamp)))

    code = run_cli(["simulate", "--days", "1", "--step-minutes", "240", "--json"], monkeypatch)

    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert [j["key"] for j in report["journeys"]] == blueprints.names()
    assert len(report["days"]) == 1 and report["days"][0]["events"] > 0
    assert datetime.fromisoformat(report["start"]) >= clock.now() - timedelta(minutes=5)
    with session_scope(readonly=True) as session:
        after = session.scalar(select(func.max(Event.timestamp)))
    assert before is not None and after is not None and after > before
