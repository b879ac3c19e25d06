"""What each node does to a run on the worker, and what happens to runs around them:
branches, splits and holdouts, local-time delays, traits, events, webhooks, versions,
pausing, archiving, merges and erasure."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from sqlalchemy import event, select

from regulars.customers import service as customers
from regulars.db import Database, session_scope
from regulars.jobs.models import Job
from regulars.journeys import service as journeys
from regulars.journeys import tasks as journey_tasks
from regulars.journeys.execution import WEBHOOK_JOB
from regulars.journeys.models import Journey, JourneyRun, JourneyStep, RunState
from regulars.journeys.schemas import JourneyUpdate, RunCreate
from regulars.kit import clock
from regulars.kit.webhooks import verify_signature
from regulars.messages.models import Delivery, DeliveryStatus
from regulars.worker import Worker
from tests.journeys.conftest import JourneyFactory, Track, run_worker
from tests.messages.conftest import T0, CustomerFactory, TemplateFactory


def _runs(key: str) -> list[JourneyRun]:
    with session_scope() as session:
        journey_id = select(Journey.id).where(Journey.key == key).scalar_subquery()
        query = select(JourneyRun).where(JourneyRun.journey_id == journey_id)
        return list(session.scalars(query.order_by(JourneyRun.id)))


def _steps(run_id: str) -> list[tuple[str, str, str | None]]:
    with session_scope() as session:
        query = select(JourneyStep).where(JourneyStep.run_id == run_id).order_by(JourneyStep.seq)
        return [(s.node_id, s.outcome, s.next_node) for s in session.scalars(query)]


def _templates_sent(customer_id: str) -> list[str]:
    with session_scope() as session:
        query = select(Delivery.template_key).where(Delivery.customer_id == customer_id)
        return sorted(str(t) for t in session.scalars(query.order_by(Delivery.created_at)))


def _start(key: str, customer_id: str, **properties: Any) -> str:
    with session_scope() as session:
        return journeys.start_run(
            session, key, RunCreate(customer_id=customer_id, properties=properties)
        ).id


def _thanked_on_its_way(
    journey: JourneyFactory, customer: CustomerFactory, template: TemplateFactory
) -> str:
    """A run started, due now, whose one node sends an email: answers the customer's id."""
    template("thanks", "email")
    journey(
        "thanked",
        {
            "trigger": {"type": "api"},
            "start": "thanks",
            "nodes": {"thanks": {"type": "send", "template": "thanks"}},
        },
    )
    ann = customer("ann", email="ann@example.com", consents={"email": True})
    _start("thanked", ann)
    return ann


def _delivery_status(customer_id: str) -> str:
    with session_scope() as session:
        query = select(Delivery.status).where(Delivery.customer_id == customer_id)
        (status,) = session.scalars(query)
    return status


def test_a_journeys_message_reaches_the_provider_in_the_round_that_queued_it(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    template: TemplateFactory,
    database: Database,
) -> None:
    """The step claims the delivery it queued in its own transaction and hands it to the
    deliveries drain of the same round: two write transactions (the step, the outcome),
    and the message goes out though the clock moved past the round's start (the round
    began before the step queued it)."""
    ann = _thanked_on_its_way(journey, customer, template)
    round_began = clock.now()
    frozen_clock.advance(timedelta(milliseconds=40))
    commits: list[str] = []

    def count(_connection: Any) -> None:
        commits.append("commit")

    event.listen(database.writer, "commit", count)
    try:
        handled = Worker(worker_id="w1").drain_queues(round_began)
    finally:
        event.remove(database.writer, "commit", count)

    assert handled == 2  # the step, then its delivery
    assert _delivery_status(ann) == DeliveryStatus.DELIVERED  # the sandbox's answer
    assert len(commits) == 2


def test_a_journey_drain_outside_a_worker_round_leaves_its_messages_queued(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    template: TemplateFactory,
) -> None:
    """Called alone (a test, the benchmark), no deliveries drain follows in the same round
    to take what a step would claim: the step claims nothing."""
    ann = _thanked_on_its_way(journey, customer, template)
    assert journey_tasks.advance_runs("w1", clock.now(), 500) == 1
    assert _delivery_status(ann) == DeliveryStatus.QUEUED


def test_branch_on_event_history_sends_the_right_message(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    template: TemplateFactory,
    track: Track,
) -> None:
    template("thanks", "email")
    template("nudge", "email")
    journey(
        "branchy",
        {
            "trigger": {"type": "api"},
            "start": "ordered",
            "nodes": {
                "ordered": {
                    "type": "branch",
                    "condition": {
                        "type": "event",
                        "name": "Order Completed",
                        "op": "gte",
                        "value": 1,
                    },
                    "yes": "thanks",
                    "no": "nudge",
                },
                "thanks": {"type": "send", "template": "thanks"},
                "nudge": {"type": "send", "template": "nudge"},
            },
        },
    )
    buyer = customer("buyer", email="buyer@example.com")
    browser = customer("browser", email="browser@example.com")
    track("buyer", "Order Completed", {"revenue": 10})
    buyer_run, browser_run = _start("branchy", buyer), _start("branchy", browser)
    run_worker()
    assert _templates_sent(buyer) == ["thanks"]
    assert _templates_sent(browser) == ["nudge"]
    assert _steps(buyer_run) == [("ordered", "yes", "thanks"), ("thanks", "next", None)]
    assert _steps(browser_run) == [("ordered", "no", "nudge"), ("nudge", "next", None)]


def test_holdout_and_split_arms_with_uplift_in_the_statistics(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    template: TemplateFactory,
    track: Track,
) -> None:
    template("offer-a", "email")
    template("offer-b", "email")
    journey(
        "winback",
        {
            "trigger": {"type": "api"},
            "goal": {"event": "Order Completed", "within": "7d"},
            "start": "holdout",
            "nodes": {
                "holdout": {"type": "holdout", "percent": 20, "next": "ab"},
                "ab": {
                    "type": "split",
                    "paths": [
                        {"name": "a", "percent": 50, "next": "send-a"},
                        {"name": "b", "percent": 50, "next": "send-b"},
                    ],
                },
                "send-a": {"type": "send", "template": "offer-a"},
                "send-b": {"type": "send", "template": "offer-b"},
            },
        },
    )
    people = [customer(f"p{i}", email=f"p{i}@example.com") for i in range(200)]
    for person in people:
        _start("winback", person)
    run_worker()
    runs = _runs("winback")
    arms = {v: [r for r in runs if r.variant == v] for v in ("control", "a", "b")}
    assert sum(len(a) for a in arms.values()) == 200
    # 20% holdout of 200: binomial sd ~5.7, so 40 +- 20 is over 3 sd.
    assert 20 <= len(arms["control"]) <= 60
    for run in arms["control"]:
        assert run.state == RunState.EXITED and run.exit_reason == "holdout"
        assert _templates_sent(run.customer_id) == []
    for variant in ("a", "b"):
        for run in arms[variant]:
            assert _templates_sent(run.customer_id) == [f"offer-{variant}"]
    # Every "a" customer and no one else buys: a's uplift over control is 100 points.
    buyers = {r.customer_id for r in arms["a"]}
    frozen_clock.advance(timedelta(days=1))
    for index, person in enumerate(people):
        if person in buyers:
            track(f"p{index}", "Order Completed", {"revenue": 20})
    with session_scope() as session:
        stats = journeys.stats_of(session, "winback")
    by_arm = {arm.variant: arm for arm in stats.arms}
    assert by_arm["a"].conversions == len(buyers) and by_arm["a"].revenue == 20 * len(buyers)
    assert by_arm["control"].conversions == 0 and by_arm["b"].conversions == 0
    assert by_arm["a"].uplift == pytest.approx(1.0)
    assert by_arm["b"].uplift == pytest.approx(0.0)
    assert by_arm["control"].uplift is None
    nodes = {n.node_id: n for n in stats.nodes}
    assert nodes["holdout"].entered == 200
    assert nodes["holdout"].outcomes == {
        "control": len(arms["control"]),
        "treatment": 200 - len(arms["control"]),
    }
    assert nodes["send-a"].messages == len(arms["a"]) and nodes["send-a"].exited == len(arms["a"])


def test_delay_until_nine_in_the_morning_local_time(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    template: TemplateFactory,
) -> None:
    template("morning", "email")
    journey(
        "morning",
        {
            "trigger": {"type": "api"},
            "start": "wait",
            "nodes": {
                "wait": {"type": "delay", "at": "09:00", "next": "send"},
                "send": {"type": "send", "template": "morning"},
            },
        },
    )
    # T0 is 10:00 UTC = 19:00 in Tokyo: the next 09:00 there is 00:00 UTC on 3 March.
    tokyo = customer("tokyo", email="t@example.com", timezone="Asia/Tokyo")
    _start("morning", tokyo)
    run_worker()
    (run,) = _runs("morning")
    assert run.state == RunState.WAITING
    assert run.due_at == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
    frozen_clock.set(datetime(2026, 3, 2, 23, 59, tzinfo=UTC))
    run_worker()
    assert _templates_sent(tokyo) == []
    frozen_clock.set(datetime(2026, 3, 3, 0, 0, tzinfo=UTC))
    run_worker()
    assert _templates_sent(tokyo) == ["morning"]


def test_update_traits_and_emit_event_start_another_journey(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    template: TemplateFactory,
) -> None:
    template("review", "email")
    journey(
        "tagger",
        {
            "trigger": {"type": "api"},
            "start": "tag",
            "nodes": {
                "tag": {
                    "type": "update_traits",
                    "traits": {"vip": True, "last_order": "{{ trigger.order_id }}"},
                    "next": "emit",
                },
                "emit": {
                    "type": "emit",
                    "event": "Review Requested",
                    "properties": {"order_id": "{{ trigger.order_id }}"},
                },
            },
        },
    )
    journey(
        "reviews",
        {
            "trigger": {"type": "event", "event": "Review Requested"},
            "start": "ask",
            "nodes": {"ask": {"type": "send", "template": "review"}},
        },
    )
    ann = customer("ann", email="ann@example.com")
    _start("tagger", ann, order_id="o-7")
    run_worker()
    with session_scope() as session:
        profile = customers.get_customer(session, ann)
    assert profile is not None
    assert profile.traits["vip"] is True and profile.traits["last_order"] == "o-7"
    (review_run,) = _runs("reviews")
    assert review_run.trigger["properties"]["order_id"] == "o-7"
    assert _templates_sent(ann) == ["review"]


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"received": [], "status": 200})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", handler
    server.shutdown()


def test_webhook_node_posts_a_signed_call_once_and_retries_a_503(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    receiver: tuple[str, type[_Receiver]],
) -> None:
    url, handler = receiver
    journey(
        "hooked",
        {
            "trigger": {"type": "api"},
            "start": "call",
            "nodes": {
                "call": {"type": "webhook", "url": url, "body": {"order": "{{ trigger.order_id }}"}}
            },
        },
    )
    ann = customer("ann")
    run_id = _start("hooked", ann, order_id="o-1")
    run_worker()
    handler.status = 503
    worker = Worker(worker_id="test")
    worker.run_once(clock.now())
    assert len(handler.received) == 1
    with session_scope() as session:
        (job,) = session.scalars(select(Job).where(Job.kind == WEBHOOK_JOB))
        assert job.attempts == 1 and job.last_error is not None and "503" in job.last_error
        retry_at = job.due_at
    handler.status = 200
    frozen_clock.set(retry_at)
    worker.run_once(clock.now())
    assert len(handler.received) == 2
    headers, body = handler.received[-1]
    payload = json.loads(body)
    assert payload["run_id"] == run_id and payload["customer_id"] == ann
    assert payload["data"] == {"order": "o-1"}
    assert verify_signature(
        journeys.webhook_secret(),
        headers["X-Regulars-Timestamp"],
        body,
        headers["X-Regulars-Signature"],
        now=clock.now(),
    )
    worker.run_once(clock.now() + timedelta(hours=1))
    assert len(handler.received) == 2


def _two_step(first: str, second: str) -> dict[str, Any]:
    return {
        "trigger": {"type": "api"},
        "start": "first",
        "nodes": {
            "first": {"type": "delay", "duration": "1d", "next": "second"},
            "second": {"type": "send", "template": second},
        },
    }


def test_runs_finish_on_their_version_unless_moved_to_the_new_one(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    template: TemplateFactory,
) -> None:
    template("v1", "email")
    template("v2", "email")
    journey("versions", _two_step("x", "v1"))
    stays, moves = (
        customer("stays", email="s@example.com"),
        customer("moves", email="m@example.com"),
    )
    _start("versions", stays)
    run_worker()
    with session_scope() as session:
        journeys.update(session, "versions", JourneyUpdate(definition=_two_step("x", "v2")))
        journeys.publish(session, "versions")
    _start("versions", moves)
    run_worker()
    frozen_clock.advance(timedelta(days=1))
    run_worker()
    assert _templates_sent(stays) == ["v1"]
    assert _templates_sent(moves) == ["v2"]
    # A third version with migrate_runs: a run waiting at "first" continues on it.
    template("v3", "email")
    late = customer("late", email="l@example.com")
    _start("versions", late)
    run_worker()
    with session_scope() as session:
        journeys.update(session, "versions", JourneyUpdate(definition=_two_step("x", "v3")))
        journeys.publish(session, "versions", migrate_runs=True)
    frozen_clock.advance(timedelta(days=1))
    run_worker()
    assert _templates_sent(late) == ["v3"]
    assert {r.customer_id: r.version for r in _runs("versions")}[late] == 3


def test_paused_journey_holds_its_runs_and_archiving_ends_them(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    template: TemplateFactory,
    track: Track,
) -> None:
    template("later", "email")
    journey(
        "paused", _two_step("x", "later") | {"trigger": {"type": "event", "event": "Signed Up"}}
    )
    ann = customer("ann", email="a@example.com")
    track("ann", "Signed Up")
    run_worker()
    with session_scope() as session:
        journeys.pause(session, "paused")
    customer("bob", email="b@example.com")
    track("bob", "Signed Up")  # paused: no new runs
    frozen_clock.advance(timedelta(days=2))
    run_worker()
    assert _templates_sent(ann) == [] and len(_runs("paused")) == 1
    with session_scope() as session:
        journeys.resume(session, "paused")
    run_worker()
    assert _templates_sent(ann) == ["later"]
    track("bob", "Signed Up")
    with session_scope() as session:
        journeys.archive(session, "paused")
    bob_run = next(r for r in _runs("paused") if r.customer_id != ann)
    assert bob_run.state == RunState.EXITED and bob_run.exit_reason == "archived"


def test_merged_customer_keeps_the_run_and_an_erased_one_leaves_none(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    template: TemplateFactory,
    track: Track,
) -> None:
    template("later", "email")
    journey("merge", _two_step("x", "later") | {"trigger": {"type": "event", "event": "Signed Up"}})
    with session_scope() as session:
        customers.ingest(
            session,
            [
                {
                    "type": "track",
                    "anonymousId": "anon-1",
                    "event": "Signed Up",
                    "messageId": "m1",
                    "timestamp": T0.isoformat(),
                }
            ],
            source="tests",
        )
    ann = customer("ann", email="ann@example.com")
    with session_scope() as session:
        customers.ingest(
            session,
            [
                {
                    "type": "alias",
                    "userId": "ann",
                    "previousId": "anon-1",
                    "messageId": "m2",
                    "timestamp": T0.isoformat(),
                }
            ],
            source="tests",
        )
    (run,) = _runs("merge")
    assert run.customer_id == ann
    with session_scope() as session:
        exported = customers.export(session, ann, at=clock.now())
        assert exported is not None
        held = exported.held_elsewhere["journey_runs"]
        assert [getattr(r, "id", None) for r in held] == [run.id]
    frozen_clock.advance(timedelta(days=1))
    run_worker()
    assert _templates_sent(ann) == ["later"]
    with session_scope() as session:
        customers.erase(session, ann, requested_by="test", at=clock.now())
    assert _runs("merge") == []
