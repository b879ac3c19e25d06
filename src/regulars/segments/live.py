"""Live membership: re-evaluate, for the customers a write changed, only the segments that
read what changed; and a sweep that flips time-dependent memberships on time.

The dependency index (which event names, fields, facts, consents, groups and segments each
rule reads) is built from the definitions and cached per process; a cheap version query
(ids and update times of the segments), read with the customers' rows, tells when another
process changed them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from sqlalchemy.orm import Session

from regulars.customers import service as customers
from regulars.kit import clock
from regulars.kit.zones import zone_or_utc
from regulars.segments import definitions, membership, repository
from regulars.segments.membership import Target
from regulars.segments.models import Segment
from regulars.segments.repository import compiler
from regulars.segments.rules import Dependencies, TimeDependence, dependencies


@dataclass(frozen=True)
class _Entry:
    target: Target
    deps: Dependencies


@dataclass(frozen=True)
class SegmentIndex:
    version: repository.Version
    entries: tuple[_Entry, ...]
    dependents: Mapping[str, frozenset[str]]  # key -> keys of segments that refer to it

    @property
    def segment_ids(self) -> dict[str, str]:
        return {e.target.key: e.target.id for e in self.entries}

    def targets(self, keys: set[str]) -> list[Target]:
        return [e.target for e in self.entries if e.target.key in keys]

    def woken_by(self, change: customers.CustomerChange) -> set[str]:
        return {e.target.key for e in self.entries if _wakes(e.deps, change)}

    def with_dependents(self, keys: set[str]) -> set[str]:
        found, todo = set(keys), list(keys)
        while todo:
            for dependent in self.dependents.get(todo.pop(), frozenset()):
                if dependent not in found:
                    found.add(dependent)
                    todo.append(dependent)
        return found


def _wakes(deps: Dependencies, change: customers.CustomerChange) -> bool:
    return (
        change.everything
        or bool(deps.event_names & change.event_names)
        or (deps.profile and change.profile)
        or (deps.facts and change.facts)
        or (deps.consents and change.consents)
        or (deps.groups and change.groups)
    )


_cache: dict[str, SegmentIndex] = {}
_cache_lock = threading.Lock()


def index(session: Session) -> SegmentIndex:
    version = repository.version(session)
    cache_key = _cache_key(session)
    cached = _cache.get(cache_key)
    if cached is not None and cached.version == version:
        return cached
    built = _build(version, repository.all_segments(session))
    with _cache_lock:
        _cache[cache_key] = built
    return built


def _cache_key(session: Session) -> str:
    return str(session.get_bind().engine.url)


def _build(version: repository.Version, segments: list[Segment]) -> SegmentIndex:
    entries = []
    for segment in segments:
        target = Target.of(segment)
        entries.append(_Entry(target, dependencies(target.rule)))
    dependents: dict[str, set[str]] = {}
    for entry in entries:
        for referred in entry.deps.segments:
            dependents.setdefault(referred, set()).add(entry.target.key)
    return SegmentIndex(
        version, tuple(entries), {key: frozenset(keys) for key, keys in dependents.items()}
    )


def on_customers_changed(session: Session, changes: Mapping[str, customers.CustomerChange]) -> None:
    """The change listener: same transaction as the write that changed the customers. Each
    customer is re-checked for the segments their own change woke (and those built on them):
    a product view does not re-check the segments about orders.

    The index this process knows is used as it is, and its version checked in the same
    round trip as the customers' rows; only when another process changed the segments is
    the index rebuilt and the work started again (nothing was written before the check)."""
    known = _cache.get(_cache_key(session))
    if known is not None:
        try:
            _reevaluate_changed(session, known, changes, expect_version=known.version)
            return
        except repository.SegmentsChanged:
            pass  # rebuilt below
    _reevaluate_changed(session, index(session), changes, expect_version=None)


def _reevaluate_changed(
    session: Session,
    segment_index: SegmentIndex,
    changes: Mapping[str, customers.CustomerChange],
    *,
    expect_version: repository.Version | None,
) -> None:
    expanded: dict[frozenset[str], frozenset[str]] = {}
    only: dict[str, frozenset[str]] = {}
    for customer_id, change in changes.items():
        woken = frozenset(segment_index.woken_by(change))
        if not woken:
            continue
        if woken not in expanded:
            expanded[woken] = frozenset(segment_index.with_dependents(set(woken)))
        only[customer_id] = expanded[woken]
    if not only:  # nothing to re-check, if the index is the segments' as they are
        if expect_version is not None:
            repository.check_version(session, expect_version)
        return
    membership.reevaluate(
        session,
        segment_index.targets(set().union(*only.values())),
        list(only),
        now=clock.now(),
        segment_ids=segment_index.segment_ids,
        only=only,
        expect_version=expect_version,
    )


def on_customer_removed(session: Session, customer_id: str, survivor_id: str | None) -> None:
    membership.remove_customer(session, customer_id, now=clock.now())
    if survivor_id is not None:
        repository.move_history(session, merged_id=customer_id, survivor_id=survivor_id)


# --- the sweep ---


@dataclass(frozen=True)
class SweepStep:
    """One segment's share of a sweep: a full compute (a local date changed under one of its
    calendar conditions), or the customers whose stored time crossed a rolling window's edge."""

    segment_key: str
    compute: bool = False
    crossers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SweepPlan:
    now: datetime
    steps: tuple[SweepStep, ...]
    segment_ids: tuple[str, ...]  # every segment: swept up to `now` once the steps are done


# A transaction to run a step in, read-only or not: the caller's boundary decides what that is.
Transaction = Callable[[bool], AbstractContextManager[Session]]


def sweep(session: Session, *, now: datetime | None = None) -> dict[str, int]:
    """Flip what time alone changed since the last sweep, in the caller's one transaction
    (the CLI, the simulation); answer changes per segment key."""
    return sweep_in_steps(lambda readonly: nullcontext(session), now=now or clock.now())


def sweep_in_steps(transaction: Transaction, *, now: datetime) -> dict[str, int]:
    """The sweep's steps, each in `transaction(readonly)`: the built-ins installed, the plan
    read, each segment's flips written, the sweep's moment recorded. The worker gives each
    step a transaction of its own (segments.tasks.sweep), so the plan's reads hold no lock."""
    with transaction(False) as session:
        changed = install_builtins(session, now=now)
    with transaction(True) as session:
        plan = plan_sweep(session, now=now)
    for step in plan.steps:
        with transaction(False) as session:
            moved = run_sweep_step(session, step, now=now)
        if moved:
            changed[step.segment_key] = changed.get(step.segment_key, 0) + moved
    with transaction(False) as session:
        finish_sweep(session, plan)
    return changed


def install_builtins(session: Session, *, now: datetime) -> dict[str, int]:
    """Create or update the built-in segments and compute those that changed: entered per
    key (usually nothing, and nothing written)."""
    return {
        segment.key: membership.compute(session, segment, now=now).entered
        for segment in definitions.ensure_builtins(session, now=now)
    }


def plan_sweep(session: Session, *, now: datetime) -> SweepPlan:
    """What time alone changed since the last sweep, found by reads only.

    Rolling windows ("in the last 30 days", "no order in 60 days", an absence's wait): the
    customers whose stored time plus the window crossed now since the last sweep, found
    through the indexes. Calendar conditions (trait dates, local date ranges): a full compute
    whenever a local date changed in some customer's zone."""
    segment_index = index(session)
    deps_by_id = {e.target.id: e.deps for e in segment_index.entries}
    segments = repository.all_segments(session)
    zones: list[tzinfo] | None = None  # read once, and only when a calendar rule asks
    steps: list[SweepStep] = []
    for segment in segments:
        deps = deps_by_id[segment.id]
        since = segment.swept_at or segment.computed_at
        if deps.time is TimeDependence.NONE or since is None or since >= now:
            continue
        if deps.time is TimeDependence.CALENDAR:
            if zones is None:
                zones = [zone_or_utc(zone) for zone in compiler.timezones(session)]
            if _local_date_changed(since, now, zones):
                steps.append(SweepStep(segment.key, compute=True))
                continue
        crossers: set[str] = set()
        for edge in deps.rolling:
            crossers |= compiler.edge_crossers(session, edge, since=since, until=now)
        if crossers:
            steps.append(SweepStep(segment.key, crossers=frozenset(crossers)))
    return SweepPlan(now, tuple(steps), tuple(segment.id for segment in segments))


def run_sweep_step(session: Session, step: SweepStep, *, now: datetime) -> int:
    """Flip one segment's share of the sweep (and the segments built on it); answer how many
    memberships moved. The customers are evaluated on what is stored when the step runs, so
    a change since the plan was read is not undone."""
    segment = repository.get_by_key(session, step.segment_key)
    if segment is None:  # deleted since the plan was read
        return 0
    if step.compute:
        result = membership.compute(session, segment, now=now)
        return result.entered + result.exited
    idx = index(session)
    targets = idx.targets(idx.with_dependents({segment.key}))
    diffs = membership.reevaluate(
        session, targets, step.crossers, now=now, segment_ids=idx.segment_ids
    )
    return sum(len(d.entered) + len(d.exited) for d in diffs.values())


def finish_sweep(session: Session, plan: SweepPlan) -> None:
    """Every segment swept up to the plan's moment (the next sweep starts there)."""
    repository.set_swept(session, plan.segment_ids, plan.now)


def _local_date_changed(since: datetime, now: datetime, zones: list[tzinfo]) -> bool:
    """Did midnight pass in any of the customers' zones between the two moments?"""
    if now - since >= timedelta(days=1):
        return True
    return any(since.astimezone(zone).date() != now.astimezone(zone).date() for zone in zones)
