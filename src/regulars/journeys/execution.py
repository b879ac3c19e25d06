"""Moving runs along: claim due runs, run each node's logic, carry out the effects, and
write the transitions, in the caller's one transaction.

Work is set-based: a claimed batch moves in hops; each hop groups the runs by node, looks up
what those nodes read for all their customers at once (a branch's condition, a wait's
awaited event), steps every run, and carries out the effects together (one `send_many`
for the messages). Every effect is keyed by (run, step number), so a batch that crashes and
runs again sends nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from regulars.customers import service as customers
from regulars.errors import RegularsError
from regulars.jobs import service as jobs
from regulars.journeys import catalog, repository
from regulars.journeys.models import RunState
from regulars.journeys.moments import started_at
from regulars.journeys.nodes import (
    Branch,
    CallWebhook,
    Effect,
    EmitEvent,
    Node,
    Observed,
    RunView,
    SendMessage,
    SetTraits,
    Transition,
    Wait,
    matches,
)
from regulars.kit.zones import zone_or_utc
from regulars.messages import service as messages
from regulars.messages.models import Category, MessageChannel
from regulars.segments import service as segments

MAX_HOPS = 50  # nodes one run may pass in one batch; a longer chain goes on next round
WEBHOOK_JOB = "journeys.webhook"


@dataclass(slots=True)
class Run:
    """A claimed run, changed in memory while the batch moves it, then saved."""

    id: str
    journey_id: str
    version: int
    customer_id: str
    state: RunState
    node_id: str | None
    arrived_at: datetime
    trigger: dict[str, Any]
    heard: dict[str, Any]
    heard_at: datetime | None
    variant: str | None
    steps: int
    due_at: datetime | None = None
    listen_for: str | None = None
    ended_at: datetime | None = None
    exit_reason: str | None = None

    @classmethod
    def of(cls, row: Row[Any]) -> Run:
        return cls(
            row.id,
            row.journey_id,
            row.version,
            row.customer_id,
            RunState(row.state),
            row.node_id,
            row.arrived_at,
            row.trigger,
            row.heard,
            row.heard_at,
            row.variant,
            row.steps,
        )

    @property
    def properties(self) -> dict[str, Any]:
        """The trigger's properties, with what the run's waits heard since on top."""
        return {**self.trigger.get("properties", {}), **self.heard}

    def effect_key(self) -> str:
        """The idempotency key of the effect of the step this run takes next."""
        return f"journey:{self.id}:{self.steps + 1}"

    def saved(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "node_id": self.node_id,
            "arrived_at": self.arrived_at,
            "due_at": self.due_at,
            "listen_for": self.listen_for,
            "heard": self.heard,
            "heard_at": self.heard_at,
            "variant": self.variant,
            "steps": self.steps,
            "ended_at": self.ended_at,
            "exit_reason": self.exit_reason,
        }


@dataclass(slots=True)
class Decided:
    run: Run
    node: Node
    transition: Transition
    observed: Observed


def advance_due(
    session: Session, *, now: datetime, limit: int, run_ids: Sequence[str] | None = None
) -> int:
    """Claim up to `limit` due runs and move each as far as it goes now; answer how many
    node steps ran."""
    runs = [
        Run.of(row) for row in repository.claim_due(session, now=now, limit=limit, run_ids=run_ids)
    ]
    return advance(session, runs, now=now)


def advance(session: Session, runs: list[Run], *, now: datetime) -> int:
    if not runs:
        return 0
    zones = customers.time_zones(session, sorted({r.customer_id for r in runs}))
    steps: list[dict[str, Any]] = []
    executed, pending = 0, runs
    for _ in range(MAX_HOPS):
        if not pending:
            break
        decided = _decide(session, pending, zones, now=now)
        delivered = _carry_out(session, decided, now=now)
        executed += len(decided)
        pending = []
        for item in decided:
            if _apply(item, delivered.get(item.run.id), steps, now=now):
                pending.append(item.run)
    for run in pending:  # still moving after MAX_HOPS: the next round goes on
        run.due_at = now
    repository.insert_steps(session, steps)
    repository.save_runs(session, [run.saved() for run in runs])
    return executed


def _decide(
    session: Session, runs: list[Run], zones: Mapping[str, str | None], *, now: datetime
) -> list[Decided]:
    by_node: dict[tuple[str, int, str], list[Run]] = {}
    for run in runs:
        assert run.node_id is not None
        by_node.setdefault((run.journey_id, run.version, run.node_id), []).append(run)
    decided = []
    for (journey_id, version, node_id), group in by_node.items():
        node = catalog.graph_of(session, journey_id, version).node(node_id)
        observed = _observe(session, node, group, now=now)
        for run in group:
            view = RunView(
                run.id,
                run.customer_id,
                node_id,
                run.arrived_at,
                zone_or_utc(zones.get(run.customer_id)),
                run.properties,
            )
            seen = observed.get(run.id, _NOTHING)
            decided.append(Decided(run, node, node.step(view, seen, now), seen))
    return decided


_NOTHING = Observed()


def _observe(
    session: Session, node: Node, runs: list[Run], *, now: datetime
) -> dict[str, Observed]:
    """What the node reads, for all the runs at it at once."""
    if isinstance(node, Branch):
        holds = segments.condition_holds(
            session, node.condition, [r.customer_id for r in runs], now=now
        )
        return {r.id: Observed(condition=r.customer_id in holds) for r in runs}
    if isinstance(node, Wait):
        return _awaited(session, node, runs)
    return {}


def _awaited(session: Session, node: Wait, runs: list[Run]) -> dict[str, Observed]:
    """The first awaited event each run has not taken yet. A wait looks back to the run's
    start (or to the event its last wait took), not only to its arrival: an order shipped
    before the worker moved the run into "wait for shipped" still counts."""
    since = min(_listening_since(r) for r in runs)
    customer_ids = sorted({r.customer_id for r in runs})
    events: dict[str, list[tuple[datetime, Mapping[str, Any]]]] = {}
    found = customers.recent_events(session, customer_ids, name=node.event, since=since)
    for customer_id, event in found:
        events.setdefault(customer_id, []).append((event.timestamp, event.properties))
    observed = {}
    for run in runs:
        wanted = node.wanted(run.properties)
        for at, properties in sorted(events.get(run.customer_id, []), key=lambda e: e[0]):
            if _new_to(run, node, at, properties) and matches(properties, wanted):
                observed[run.id] = Observed(awaited=properties, awaited_at=at)
                break
    return observed


def _listening_since(run: Run) -> datetime:
    return run.heard_at if run.heard_at is not None else started_at(run.trigger)


def _new_to(run: Run, node: Wait, at: datetime, properties: Mapping[str, Any]) -> bool:
    """Not before the run listens, not the event a wait took before, not the trigger."""
    if run.heard_at is not None:
        return at > run.heard_at
    trigger = run.trigger
    is_trigger = trigger.get("event") == node.event and dict(properties) == trigger.get(
        "properties"
    )
    return at >= started_at(trigger) and not is_trigger


def _apply(
    item: Decided, delivery_id: str | None, steps: list[dict[str, Any]], *, now: datetime
) -> bool:
    """Write the transition into the run; True when it moved to a node to run now."""
    run, transition = item.run, item.transition
    if transition.waits:
        run.state, run.due_at, run.listen_for = (
            RunState.WAITING,
            transition.wait_until,
            transition.listen,
        )
        return False
    run.steps += 1
    steps.append(_step_row(run, transition, delivery_id, now=now))
    if item.observed.awaited is not None:
        run.heard = {**run.heard, **item.observed.awaited}
        run.heard_at = item.observed.awaited_at
    if transition.variant is not None:
        run.variant = transition.variant
    run.listen_for = None
    if transition.next_node is None:
        ended = transition.exit_reason in ("completed", "timed_out")
        _end(run, RunState.COMPLETED if ended else RunState.EXITED, transition.exit_reason, now=now)
        return False
    run.node_id, run.arrived_at, run.state, run.due_at = (
        transition.next_node,
        now,
        RunState.ACTIVE,
        None,
    )
    return True


def _end(run: Run, state: RunState, reason: str, *, now: datetime) -> None:
    run.state, run.due_at, run.listen_for = state, None, None
    run.ended_at, run.exit_reason = now, reason


def _step_row(
    run: Run, transition: Transition, delivery_id: str | None, *, now: datetime
) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "journey_id": run.journey_id,
        "version": run.version,
        "seq": run.steps,
        "node_id": run.node_id,
        "outcome": transition.outcome[:64],
        "next_node": transition.next_node,
        "delivery_id": delivery_id,
        "detail": None,
        "at": now,
    }


def end_runs(session: Session, ending: Sequence[tuple[Row[Any], str]], *, now: datetime) -> None:
    """End runs in flight early (an exit criterion came): a step records where and why."""
    if not ending:
        return
    runs, steps = [], []
    for row, reason in ending:
        run = Run.of(row)
        run.steps += 1
        step = _step_row(run, Transition("exit", None), None, now=now)
        steps.append(step | {"detail": reason[:500]})
        _end(run, RunState.EXITED, reason[:64], now=now)
        runs.append(run.saved())
    repository.insert_steps(session, steps)
    repository.save_runs(session, runs)


# --- effects ---

EffectHandler = Callable[[Session, list[tuple[Run, Effect]], datetime], dict[str, str]]


def _carry_out(session: Session, decided: list[Decided], *, now: datetime) -> dict[str, str]:
    """Carry out every effect of the hop, by kind; answer the delivery id per run."""
    by_kind: dict[type[Effect], list[tuple[Run, Effect]]] = {}
    for item in decided:
        for effect in item.transition.effects:
            by_kind.setdefault(type(effect), []).append((item.run, effect))
    delivered: dict[str, str] = {}
    for kind, effects in by_kind.items():
        delivered |= EFFECTS[kind](session, effects, now)
    return delivered


def _send(session: Session, effects: list[tuple[Run, Effect]], now: datetime) -> dict[str, str]:
    requests, run_ids = [], []
    for run, effect in effects:
        assert isinstance(effect, SendMessage)
        requests.append(
            messages.SendRequest(
                customer_id=run.customer_id,
                template=effect.template,
                channel=MessageChannel(effect.channel) if effect.channel else None,
                category=Category(effect.category) if effect.category else None,
                idempotency_key=run.effect_key(),
                event=run.properties,
            )
        )
        run_ids.append(run.id)
    delivery_ids: list[str] = []
    for start in range(0, len(requests), 1000):
        delivery_ids += messages.send_many(session, requests[start : start + 1000])
    return dict(zip(run_ids, delivery_ids, strict=True))


def _set_traits(
    session: Session, effects: list[tuple[Run, Effect]], now: datetime
) -> dict[str, str]:
    for run, effect in effects:
        assert isinstance(effect, SetTraits)
        try:
            customers.update_traits(session, run.customer_id, effect.traits, at=now)
        except RegularsError:  # a trait the profile refuses must not stop the run
            continue
    return {}


def _emit(session: Session, effects: list[tuple[Run, Effect]], now: datetime) -> dict[str, str]:
    events = []
    for run, effect in effects:
        assert isinstance(effect, EmitEvent)
        properties = dict(effect.properties) | {"journey_run_id": run.id}
        events.append(
            customers.SystemEvent(
                run.customer_id, effect.event, properties, now, key=run.effect_key()
            )
        )
    customers.record_system_events(session, events)
    return {}


def _webhook(session: Session, effects: list[tuple[Run, Effect]], now: datetime) -> dict[str, str]:
    for run, effect in effects:
        assert isinstance(effect, CallWebhook)
        payload = {
            "url": effect.url,
            "body": dict(effect.body),
            "run_id": run.id,
            "journey_id": run.journey_id,
            "customer_id": run.customer_id,
            "trigger": run.trigger,
        }
        jobs.enqueue(session, WEBHOOK_JOB, payload, idempotency_key=run.effect_key())
    return {}


EFFECTS: dict[type[Effect], EffectHandler] = {
    SendMessage: _send,
    SetTraits: _set_traits,
    EmitEvent: _emit,
    CallWebhook: _webhook,
}


def register_effect(kind: type[Effect], handler: EffectHandler) -> None:
    """Carry out a new kind of effect (the extension point, with nodes.register)."""
    EFFECTS[kind] = handler


RETRY_DELAYS = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
)


def retry_at(failures: int, *, now: datetime) -> datetime | None:
    """When a run whose batch failed `failures` times is tried again; None: give up."""
    if failures >= len(RETRY_DELAYS):
        return None
    return now + RETRY_DELAYS[failures]
