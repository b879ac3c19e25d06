"""Every query of the journeys domain."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, String, and_, bindparam, func, select, type_coerce, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from regulars.db import (
    UTCDateTime,
    bulk_update,
    bulk_write,
    chunks,
    finds_any,
    is_postgres,
    one_of_parameter,
    prepared,
    read_in_chunks,
    sqlite_total_changes,
    table_of,
)
from regulars.journeys.definition import Status
from regulars.journeys.models import (
    ACTIVE_STATES,
    Journey,
    JourneyRun,
    JourneyStep,
    JourneyVersion,
    RunState,
)

# --- journeys and versions ---


def get(session: Session, journey_id: str) -> Journey | None:
    return session.get(Journey, journey_id)


def get_by_key(session: Session, key: str) -> Journey | None:
    return session.scalars(select(Journey).where(Journey.key == key)).one_or_none()


def list_after(session: Session, *, after: str | None, limit: int) -> list[Journey]:
    query = select(Journey).order_by(Journey.key).limit(limit)
    if after is not None:
        query = query.where(Journey.key > after)
    return list(session.scalars(query))


def stamp(session: Session) -> tuple[tuple[str, str, int | None, str], ...]:
    """What tells a process its cached journeys are stale: one small read, of a statement
    built once, its times as stored (it runs with every tracked event)."""
    return tuple((r[0], r[1], r[2], str(r[3])) for r in session.execute(_STAMP))


_JOURNEYS = table_of(Journey)
_STAMP = select(
    _JOURNEYS.c.id,
    _JOURNEYS.c.status,
    _JOURNEYS.c.live_version,
    type_coerce(_JOURNEYS.c.updated_at, String),
).order_by(_JOURNEYS.c.id)


def definition_of(session: Session, journey_id: str, version: int) -> dict[str, Any] | None:
    query = select(JourneyVersion.definition).where(
        JourneyVersion.journey_id == journey_id, JourneyVersion.version == version
    )
    found: dict[str, Any] | None = session.scalars(query).one_or_none()
    return found


def versions_in_flight(session: Session, journey_id: str) -> list[int]:
    query = (
        select(JourneyRun.version)
        .where(JourneyRun.journey_id == journey_id, JourneyRun.state.in_(ACTIVE_STATES))
        .distinct()
    )
    return sorted(session.scalars(query))


# --- runs: entering ---


def insert_runs(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert runs; one that breaks an entry rule's unique index (a run already in flight
    for the key, a once-only key already used) is skipped. Answers how many went in."""
    if not rows:
        return 0
    table = table_of(JourneyRun)

    def finish(statement: Any) -> Any:
        return statement.on_conflict_do_nothing()

    if is_postgres(session):
        written = bulk_write(
            session, table, rows, shape="runs", finish=finish, returning=table.c.id
        )
        return len(written)
    session.flush()  # pending ORM writes must not count as this insert's rows
    before = sqlite_total_changes(session)
    bulk_write(session, table, rows, shape="runs", finish=finish)
    return sqlite_total_changes(session) - before


def entry_history(
    session: Session, journey_ids: Sequence[str], customer_ids: Sequence[str]
) -> list[tuple[str, str, str, str, datetime]]:
    """(journey, customer, entry key, state, entered at) of every run of these customers in
    these journeys."""
    rows = _runs_of(session, "journeys.entry_history", _history_query, journey_ids, customer_ids)
    return [(r.journey_id, r.customer_id, r.entry_key, r.state, r.entered_at) for r in rows]


def _runs_of(
    session: Session,
    key: str,
    build: Callable[[Session], Select[Any]],
    journey_ids: Sequence[str],
    customer_ids: Sequence[str],
) -> list[Row[Any]]:
    """The rows of a select of runs by journey (list parameter "journeys") and customer
    ("ids"), built once per `key`, a chunk of customers at a time."""
    return read_in_chunks(
        session,
        (key,),
        lambda: build(session),
        list(customer_ids),
        params={"journeys": list(journey_ids)},
    )


def _history_query(session: Session) -> Select[Any]:
    runs = table_of(JourneyRun)
    columns = (runs.c.journey_id, runs.c.customer_id, runs.c.entry_key, runs.c.state)
    return select(*columns, runs.c.entered_at).where(
        one_of_parameter(session, runs.c.journey_id, "journeys"),
        one_of_parameter(session, runs.c.customer_id, "ids"),
    )


def entered_since(session: Session, journey_id: str, since: datetime) -> int:
    query = select(func.count()).where(
        JourneyRun.journey_id == journey_id, JourneyRun.entered_at >= since
    )
    return session.scalar(query) or 0


def add_throttled(session: Session, journey_id: str, count: int) -> None:
    session.execute(
        update(Journey)
        .where(Journey.id == journey_id)
        .values(throttled=Journey.throttled + count)
        .execution_options(synchronize_session=False)
    )


# --- runs: the queue ---

RUN_COLUMNS = (
    JourneyRun.id,
    JourneyRun.journey_id,
    JourneyRun.version,
    JourneyRun.customer_id,
    JourneyRun.state,
    JourneyRun.node_id,
    JourneyRun.arrived_at,
    JourneyRun.trigger,
    JourneyRun.heard,
    JourneyRun.heard_at,
    JourneyRun.variant,
    JourneyRun.steps,
    JourneyRun.entered_at,
    JourneyRun.failures,
)


def any_due(session: Session, *, now: datetime) -> bool:
    """Is a run of a journey that is not paused due? A read, so a worker with no run to
    move takes no write lock."""
    return finds_any(session, ("journeys.any_due",), _any_due_query, {"now": now})


# Core tables for the worker's statements: built once, they skip the ORM's per-execution work.
_RUNS, _JOURNEYS = table_of(JourneyRun), table_of(Journey)


def _any_due_query() -> Select[Any]:
    return select(_RUNS.c.id).where(_due(bindparam("now", type_=UTCDateTime()))).limit(1)


def _due(now: Any) -> ColumnElement[bool]:
    paused = select(_JOURNEYS.c.id).where(_JOURNEYS.c.status == Status.PAUSED)
    return and_(_RUNS.c.due_at <= now, _RUNS.c.journey_id.not_in(paused))


def claim_due(
    session: Session, *, now: datetime, limit: int, run_ids: Sequence[str] | None = None
) -> list[Row[Any]]:
    """Due runs of journeys that are not paused, locked for this transaction (PostgreSQL:
    FOR UPDATE SKIP LOCKED, so workers share the queue; SQLite: one writer at a time)."""
    by_id = run_ids is not None
    query = prepared(session, ("journeys.claim_due", by_id), lambda: _claim_query(session, by_id))
    params: dict[str, Any] = {"now": now, "limit": limit}
    if run_ids is not None:
        params["run_ids"] = list(run_ids)
    return list(session.execute(query, params))


def _claim_query(session: Session, by_id: bool) -> Select[Any]:
    columns = (_RUNS.c[attribute.key] for attribute in RUN_COLUMNS)
    query = (
        select(*columns)
        .where(_due(bindparam("now", type_=UTCDateTime())))
        .order_by(_RUNS.c.due_at)
        .limit(bindparam("limit"))
    )
    if by_id:
        query = query.where(one_of_parameter(session, _RUNS.c.id, "run_ids"))
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True, of=_RUNS)
    return query


def save_runs(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write where each run stands now (rows keyed by the run's `id`): one statement for the
    whole batch."""
    bulk_update(session, table_of(JourneyRun), rows, key="id", shape="runs")


def record_failure(
    session: Session, run_id: str, *, error: str, retry_at: datetime | None, now: datetime
) -> None:
    values: dict[str, Any] = {
        "failures": JourneyRun.failures + 1,
        "last_error": error[:500],
        "due_at": retry_at,
    }
    if retry_at is None:
        values |= {"state": RunState.EXITED, "exit_reason": "failed", "ended_at": now}
    session.execute(
        update(JourneyRun)
        .where(JourneyRun.id == run_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def insert_steps(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        bulk_write(session, table_of(JourneyStep), rows, shape="steps")


# --- runs: what events do to them ---


def wake(session: Session, customer_ids: Sequence[str], names: Sequence[str], now: datetime) -> int:
    """Make the runs waiting for one of these events due now (the listening index)."""
    statement = prepared(session, ("journeys.wake",), lambda: _wake_statement(session))
    woken = 0
    for chunk in chunks(list(customer_ids)):
        params = {"ids": list(chunk), "names": list(names), "now": now}
        result = session.execute(statement, params)
        woken += int(getattr(result, "rowcount", 0) or 0)
    return woken


def _wake_statement(session: Session) -> Any:
    return (
        update(_RUNS)
        .where(
            one_of_parameter(session, _RUNS.c.customer_id, "ids"),
            one_of_parameter(session, _RUNS.c.listen_for, "names"),
            _RUNS.c.state == RunState.WAITING,
        )
        .values(due_at=bindparam("now", type_=UTCDateTime()))
    )


def in_flight(
    session: Session, journey_ids: Sequence[str], customer_ids: Sequence[str]
) -> list[Row[Any]]:
    """The active and waiting runs of these customers in these journeys (locked on
    PostgreSQL: the caller ends some of them)."""
    return _runs_of(session, "journeys.in_flight", _in_flight_query, journey_ids, customer_ids)


def _in_flight_query(session: Session) -> Select[Any]:
    query = select(*(_RUNS.c[attribute.key] for attribute in RUN_COLUMNS)).where(
        one_of_parameter(session, _RUNS.c.journey_id, "journeys"),
        one_of_parameter(session, _RUNS.c.customer_id, "ids"),
        _RUNS.c.state.in_(ACTIVE_STATES),
    )
    return query.with_for_update(of=_RUNS) if is_postgres(session) else query


@dataclass(frozen=True, slots=True)
class Conversion:
    """A goal event: it converts the customer's runs of the journey that entered within the
    goal's window before it (`since` to `at`) and have not converted yet."""

    journey_id: str
    customer_id: str
    at: datetime
    since: datetime
    value: float | None


def convert(session: Session, conversions: Sequence[Conversion]) -> None:
    """Count every goal event of a batch: one statement built once, run for each in order
    (a second goal event of the same run finds it converted)."""
    if not conversions:
        return
    statement = prepared(session, ("journeys.convert",), _convert_statement)
    params = [
        {"journey": c.journey_id, "customer": c.customer_id, "at": c.at, "since": c.since,
         "value": c.value}
        for c in conversions
    ]  # fmt: skip
    session.execute(statement, params)


def _convert_statement() -> Any:
    at = bindparam("at", type_=UTCDateTime())
    return (
        update(_RUNS)
        .where(
            _RUNS.c.journey_id == bindparam("journey"),
            _RUNS.c.customer_id == bindparam("customer"),
            _RUNS.c.converted_at.is_(None),
            _RUNS.c.entered_at >= bindparam("since", type_=UTCDateTime()),
            _RUNS.c.entered_at <= at,
        )
        .values(converted_at=at, conversion_value=bindparam("value"))
    )


def end_in_flight(session: Session, journey_id: str, *, reason: str, now: datetime) -> int:
    result = session.execute(
        update(JourneyRun)
        .where(JourneyRun.journey_id == journey_id, JourneyRun.state.in_(ACTIVE_STATES))
        .values(
            state=RunState.EXITED,
            exit_reason=reason,
            ended_at=now,
            due_at=None,
            listen_for=None,
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def move_to_version(
    session: Session, journey_id: str, *, version: int, node_ids: Sequence[str]
) -> int:
    """Runs in flight at a node the new version also has move to it."""
    result = session.execute(
        update(JourneyRun)
        .where(
            JourneyRun.journey_id == journey_id,
            JourneyRun.state.in_(ACTIVE_STATES),
            JourneyRun.node_id.in_(node_ids),
            JourneyRun.version != version,
        )
        .values(version=version)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- customers leaving ---


def move_customer(session: Session, *, merged_id: str, survivor_id: str) -> None:
    """A merged profile's runs follow it; a run in flight that the survivor also has in
    flight (same journey and entry key) ends as a duplicate first."""
    survivor_keys = select(JourneyRun.journey_id, JourneyRun.entry_key).where(
        JourneyRun.customer_id == survivor_id, JourneyRun.state.in_(ACTIVE_STATES)
    )
    clashing = [(r[0], r[1]) for r in session.execute(survivor_keys)]
    for journey_id, entry_key in clashing:
        session.execute(
            update(JourneyRun)
            .where(
                JourneyRun.customer_id == merged_id,
                JourneyRun.journey_id == journey_id,
                JourneyRun.entry_key == entry_key,
                JourneyRun.state.in_(ACTIVE_STATES),
            )
            .values(state=RunState.EXITED, exit_reason="merged", due_at=None, listen_for=None)
            .execution_options(synchronize_session=False)
        )
    session.execute(
        update(JourneyRun)
        .where(JourneyRun.customer_id == merged_id)
        .values(customer_id=survivor_id, once_key=None)
        .execution_options(synchronize_session=False)
    )


def runs_of(session: Session, customer_id: str, *, limit: int = 200) -> list[JourneyRun]:
    query = (
        select(JourneyRun)
        .where(JourneyRun.customer_id == customer_id)
        .order_by(JourneyRun.entered_at.desc(), JourneyRun.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def newest_run(session: Session, journey_id: str, customer_id: str) -> JourneyRun | None:
    query = (
        select(JourneyRun)
        .where(JourneyRun.journey_id == journey_id, JourneyRun.customer_id == customer_id)
        .order_by(JourneyRun.entered_at.desc(), JourneyRun.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def get_run(session: Session, run_id: str) -> JourneyRun | None:
    return session.get(JourneyRun, run_id)


def steps_of(session: Session, run_id: str) -> list[JourneyStep]:
    query = select(JourneyStep).where(JourneyStep.run_id == run_id).order_by(JourneyStep.seq)
    return list(session.scalars(query))


def journey_keys(session: Session, journey_ids: Iterable[str]) -> dict[str, str]:
    ids = list(set(journey_ids))
    if not ids:
        return {}
    rows = session.execute(select(Journey.id, Journey.key).where(Journey.id.in_(ids)))
    return {r[0]: r[1] for r in rows}


# --- statistics ---


def run_counts(session: Session, journey_id: str) -> list[tuple[str, str | None, int, int, float]]:
    """(state, variant, runs, conversions, revenue) for the journey's runs."""
    query = (
        select(
            JourneyRun.state,
            JourneyRun.variant,
            func.count(),
            func.count(JourneyRun.converted_at),
            func.coalesce(func.sum(JourneyRun.conversion_value), 0.0),
        )
        .where(JourneyRun.journey_id == journey_id)
        .group_by(JourneyRun.state, JourneyRun.variant)
    )
    return [(r[0], r[1], int(r[2]), int(r[3]), float(r[4] or 0)) for r in session.execute(query)]


def at_nodes(session: Session, journey_id: str) -> list[tuple[str | None, str, int]]:
    """(node, state, runs) of the runs in flight."""
    query = (
        select(JourneyRun.node_id, JourneyRun.state, func.count())
        .where(JourneyRun.journey_id == journey_id, JourneyRun.state.in_(ACTIVE_STATES))
        .group_by(JourneyRun.node_id, JourneyRun.state)
    )
    return [(r[0], r[1], int(r[2])) for r in session.execute(query)]


def step_counts(session: Session, journey_id: str) -> list[tuple[str, str, bool, int, int]]:
    """(node, outcome, ended here, steps, with a message) of the steps taken."""
    ended = JourneyStep.next_node.is_(None)
    query = (
        select(
            JourneyStep.node_id,
            JourneyStep.outcome,
            ended,
            func.count(),
            func.count(JourneyStep.delivery_id),
        )
        .where(JourneyStep.journey_id == journey_id)
        .group_by(JourneyStep.node_id, JourneyStep.outcome, ended)
    )
    return [(r[0], r[1], bool(r[2]), int(r[3]), int(r[4])) for r in session.execute(query)]


# --- the dashboard ---


def runs_of_journey(
    session: Session, journey_id: str, *, customer_id: str | None, limit: int
) -> list[JourneyRun]:
    """A journey's newest runs (ids are ULIDs: newest last), or one customer's of them."""
    query = (
        select(JourneyRun)
        .where(JourneyRun.journey_id == journey_id)
        .order_by(JourneyRun.id.desc())
        .limit(limit)
    )
    if customer_id is not None:
        query = query.where(JourneyRun.customer_id == customer_id)
    return list(session.scalars(query))


def run_counts_of(
    session: Session, journey_ids: Sequence[str]
) -> list[tuple[str, str, str | None, int, int]]:
    """(journey, state, variant, runs, conversions) for the runs of several journeys at once."""
    if not journey_ids:
        return []
    query = (
        select(
            JourneyRun.journey_id,
            JourneyRun.state,
            JourneyRun.variant,
            func.count(),
            func.count(JourneyRun.converted_at),
        )
        .where(JourneyRun.journey_id.in_(list(journey_ids)))
        .group_by(JourneyRun.journey_id, JourneyRun.state, JourneyRun.variant)
    )
    return [(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in session.execute(query)]
