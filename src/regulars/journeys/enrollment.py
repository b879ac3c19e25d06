"""Who starts a run, and what events do to the runs there are.

`enroll` applies a journey's entry rules (re-entry, entry key, concurrent runs, throttle) to
a set of entrants and inserts their runs in one statement; unique indexes back the rules up
against a concurrent writer. `on_events` is the customers domain's event listener: in the
same transaction as the events, it counts goals, ends runs whose exit criterion came, wakes
the runs waiting for these events and starts the runs the events trigger.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from regulars.customers import service as customers
from regulars.jobs import service as jobs
from regulars.journeys import catalog as catalogs
from regulars.journeys import repository
from regulars.journeys.catalog import Catalog, Version
from regulars.journeys.definition import (
    EventDateTrigger,
    EventTrigger,
    ExitOnEvent,
    ExitOnSegment,
    Reentry,
    SegmentTrigger,
    parse_duration,
)
from regulars.journeys.execution import end_runs
from regulars.journeys.models import RunState
from regulars.journeys.moments import moment, started_at
from regulars.journeys.nodes import matches
from regulars.kit import clock
from regulars.kit.ids import new_id

RUNS_QUEUE = "journeys.runs"  # the worker's queue of due runs (tasks.advance_runs)


@dataclass(frozen=True, slots=True)
class Entrant:
    customer_id: str
    trigger: dict[str, Any]  # {"event", "properties", "timestamp"}: what started the run
    starts_at: datetime
    once_key: str | None = None  # one run ever for this key (anniversaries: one per year)


@dataclass(slots=True)
class _History:
    in_flight: set[str] = field(default_factory=set)
    ever: set[str] = field(default_factory=set)
    last_entered: dict[str, datetime] = field(default_factory=dict)


def trigger_of(name: str, properties: Mapping[str, Any], at: datetime) -> dict[str, Any]:
    return {"event": name, "properties": dict(properties), "timestamp": at.isoformat()}


def enroll(
    session: Session, version: Version, entrants: Sequence[Entrant], *, now: datetime
) -> int:
    """Start the runs the entry rules allow; answer how many started."""
    return enroll_many(session, [(version, entrants)], now=now)


def enroll_many(
    session: Session, groups: Sequence[tuple[Version, Sequence[Entrant]]], *, now: datetime
) -> int:
    """`enroll` for several journeys at once (an order starts the order updates and the
    cross-sell): one read of their entry histories, one insert of the runs."""
    groups = [(version, found) for version, found in groups if found and version.accepting]
    if not groups:
        return 0
    histories = _histories(
        session,
        [version.journey_id for version, _ in groups],
        {entrant.customer_id for _, found in groups for entrant in found},
    )
    rows: list[dict[str, Any]] = []
    for version, found in groups:
        chosen = _allowed(version, found, histories.get(version.journey_id, {}), now=now)
        chosen = _throttled(session, version, chosen, now=now)
        rows += [_run_row(version, entrant, key, now=now) for entrant, key in chosen]
    started = repository.insert_runs(session, rows)
    if any(row["due_at"] <= now for row in rows):
        jobs.wake_after_commit(session, queue=RUNS_QUEUE)
    return started


def _allowed(
    version: Version,
    entrants: Sequence[Entrant],
    history: dict[str, _History],
    *,
    now: datetime,
) -> list[tuple[Entrant, str]]:
    """The entrants the entry rules let in, with their entry keys, in order (an entrant let
    in counts for the next ones of the same customer)."""
    entry = version.graph.definition.entry
    chosen: list[tuple[Entrant, str]] = []
    for entrant in entrants:
        key = _entry_key(entrant, entry.key)
        seen = history.setdefault(entrant.customer_id, _History())
        if _refused(seen, key, version, now=now):
            continue
        seen.in_flight.add(key)
        seen.ever.add(key)
        seen.last_entered[key] = now
        chosen.append((entrant, key))
    return chosen


def _histories(
    session: Session, journey_ids: Sequence[str], customer_ids: Collection[str]
) -> dict[str, dict[str, _History]]:
    """Journey id -> customer id -> what the customer's runs of the journey were."""
    found: dict[str, dict[str, _History]] = {}
    rows = repository.entry_history(session, journey_ids, sorted(customer_ids))
    for journey_id, customer_id, key, state, entered_at in rows:
        seen = found.setdefault(journey_id, {}).setdefault(customer_id, _History())
        seen.ever.add(key)
        if state in (RunState.ACTIVE, RunState.WAITING):
            seen.in_flight.add(key)
        if key not in seen.last_entered or seen.last_entered[key] < entered_at:
            seen.last_entered[key] = entered_at
    return found


def _entry_key(entrant: Entrant, property_name: str | None) -> str:
    if property_name is None:
        return ""
    value = entrant.trigger.get("properties", {}).get(property_name)
    return "" if value is None else str(value)[:200]


def _refused(seen: _History, key: str, version: Version, *, now: datetime) -> bool:
    entry = version.graph.definition.entry
    if key in seen.in_flight or len(seen.in_flight) >= entry.concurrent_runs:
        return True
    if entry.reentry is Reentry.NEVER:
        return key in seen.ever
    if entry.reentry is Reentry.INTERVAL and entry.min_interval is not None:
        last = seen.last_entered.get(key)
        return last is not None and now - last < parse_duration(entry.min_interval)
    return False


def _throttled(
    session: Session, version: Version, chosen: list[tuple[Entrant, str]], *, now: datetime
) -> list[tuple[Entrant, str]]:
    per_hour = version.graph.definition.entry.per_hour
    if per_hour is None or not chosen:
        return chosen
    room = max(
        per_hour - repository.entered_since(session, version.journey_id, now - timedelta(hours=1)),
        0,
    )
    if room < len(chosen):
        repository.add_throttled(session, version.journey_id, len(chosen) - room)
    return chosen[:room]


def _run_row(version: Version, entrant: Entrant, key: str, *, now: datetime) -> dict[str, Any]:
    starts_at = entrant.starts_at
    reentry = version.graph.definition.entry.reentry
    once_key = entrant.once_key
    if once_key is None and reentry is Reentry.NEVER:
        once_key = f"{entrant.customer_id}|{key}"
    return {
        "id": new_id(),
        "journey_id": version.journey_id,
        "version": version.version,
        "customer_id": entrant.customer_id,
        "entry_key": key,
        "once_key": once_key,
        "state": RunState.ACTIVE if starts_at <= now else RunState.WAITING,
        "node_id": version.graph.definition.start,
        "arrived_at": starts_at,
        "due_at": starts_at,
        "listen_for": None,
        "trigger": entrant.trigger,
        "heard": {},
        "heard_at": None,
        "variant": None,
        "steps": 0,
        "entered_at": max(starts_at, now),
        "ended_at": None,
        "exit_reason": None,
        "converted_at": None,
        "conversion_value": None,
        "failures": 0,
        "last_error": None,
    }


# --- what events do ---


def on_events(session: Session, events: Sequence[customers.StoredEvent]) -> None:
    """The event listener: same transaction as the events."""
    catalog = catalogs.current(session)
    if not catalog.live and not catalog.listened:
        return
    now = clock.now()
    heard = [e for e in events if catalog.hears(e.name)]
    if heard:
        _count_goals(session, catalog, heard)
        # Starts before exits: a batch holding a checkout and its order ends the new run.
        _start(session, catalog, heard, now=now)
        _end_on_exit(session, catalog, heard, now=now)
    _wake(session, catalog, events, now=now)


def _count_goals(
    session: Session, catalog: Catalog, events: Sequence[customers.StoredEvent]
) -> None:
    conversions: list[repository.Conversion] = []
    for event in events:
        for version in catalog.goals.get(event.name, ()):
            goal = version.graph.definition.goal
            if goal is None or not matches(event.properties, goal.where):
                continue
            value = event.properties.get(goal.value) if goal.value else None
            conversions.append(
                repository.Conversion(
                    version.journey_id,
                    event.customer_id,
                    at=event.timestamp,
                    since=event.timestamp - parse_duration(goal.within),
                    value=float(value) if isinstance(value, int | float) else None,
                )
            )
    repository.convert(session, conversions)


def _end_on_exit(
    session: Session, catalog: Catalog, events: Sequence[customers.StoredEvent], *, now: datetime
) -> None:
    wanted: dict[tuple[str, str], list[tuple[customers.StoredEvent, list[str]]]] = {}
    for event in events:
        for version in catalog.exits.get(event.name, ()):
            for criterion in version.graph.definition.exit:
                match = _exit_match(criterion, event)
                if match is not None:
                    wanted.setdefault((version.journey_id, event.customer_id), []).append(
                        (event, match)
                    )
    if not wanted:
        return
    journey_ids = sorted({j for j, _ in wanted})
    customer_ids = sorted({c for _, c in wanted})
    ending: list[tuple[Any, str]] = []
    for run in repository.in_flight(session, journey_ids, customer_ids):
        for event, match in wanted.get((run.journey_id, run.customer_id), []):
            started_by = run.trigger.get("properties", {})
            if started_at(run.trigger) > event.timestamp:
                continue  # the run began after this event: it is no reason to leave
            if all(started_by.get(p) == event.properties.get(p) for p in match):
                ending.append((run, f"exit: {event.name}"))
                break
    end_runs(session, ending, now=now)


def _exit_match(
    criterion: ExitOnEvent | ExitOnSegment, event: customers.StoredEvent
) -> list[str] | None:
    """The trigger properties the run must share with the event, or None: no exit."""
    if isinstance(criterion, ExitOnEvent):
        if criterion.event == event.name and matches(event.properties, criterion.where):
            return criterion.match
        return None
    name = catalogs.SEGMENT_EXITED if criterion.on == "exited" else catalogs.SEGMENT_ENTERED
    if event.name == name and event.properties.get("segment_key") == criterion.segment:
        return []
    return None


def _wake(
    session: Session, catalog: Catalog, events: Sequence[customers.StoredEvent], *, now: datetime
) -> None:
    waited = [e for e in events if e.name in catalog.listened]
    if not waited:
        return
    customer_ids = sorted({e.customer_id for e in waited})
    names = sorted({e.name for e in waited})
    if repository.wake(session, customer_ids, names, now):
        jobs.wake_after_commit(session, queue=RUNS_QUEUE)


def _start(
    session: Session, catalog: Catalog, events: Sequence[customers.StoredEvent], *, now: datetime
) -> None:
    entrants: dict[str, list[Entrant]] = {}
    versions: dict[str, Version] = {}
    for event in events:
        for version in catalog.starts.get(event.name, ()):
            entrant = _entrant(version, event, now=now)
            if entrant is not None:
                entrants.setdefault(version.journey_id, []).append(entrant)
                versions[version.journey_id] = version
    enroll_many(session, [(versions[j], found) for j, found in entrants.items()], now=now)


def _entrant(version: Version, event: customers.StoredEvent, *, now: datetime) -> Entrant | None:
    trigger = version.graph.definition.trigger
    data = trigger_of(event.name, event.properties, event.timestamp)
    if isinstance(trigger, EventTrigger):
        if matches(event.properties, trigger.where):
            return Entrant(event.customer_id, data, now)
        return None
    if isinstance(trigger, SegmentTrigger):
        if event.properties.get("segment_key") == trigger.segment:
            return Entrant(event.customer_id, data, now)
        return None
    if isinstance(trigger, EventDateTrigger) and matches(event.properties, trigger.where):
        at = moment(event.properties.get(trigger.property)) if trigger.property else event.timestamp
        if at is None:
            return None
        starts_at = at + trigger.offset_delta()
        if starts_at < now and trigger.skip_past:
            return None
        return Entrant(event.customer_id, data, starts_at)
    return None
