"""Who is in a segment: full compute, re-evaluation of a few customers, and the diff written
as members, history rows and segment.entered / segment.exited events on the timeline."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy.orm import Session

from regulars.customers import service as customers
from regulars.kit import clock
from regulars.kit.ids import new_id
from regulars.segments import engine, repository
from regulars.segments.models import Segment
from regulars.segments.repository import compiler
from regulars.segments.rules import EventRead, Rule, dependencies, event_reads, parse_rule
from regulars.segments.schemas import ComputeResult

TargetT = TypeVar("TargetT", "Segment", "Target")

ENTERED = "segment.entered"
EXITED = "segment.exited"


@dataclass(frozen=True, slots=True)
class Diff:
    entered: list[str]
    exited: list[str]


@dataclass(frozen=True, slots=True)
class Target:
    """A segment as evaluation needs it: the rule parsed once (the live index keeps these)."""

    id: str
    key: str
    name: str
    rule: Rule
    refers: frozenset[str]  # keys of the segments its rule reads
    event_reads: tuple[tuple[str, EventRead], ...]  # the events its rule reads, by name
    check: engine.Check  # the rule compiled, for evaluating it over many customers

    @classmethod
    def of(cls, segment: Segment) -> Target:
        return cls.of_rule(segment.id, segment.key, segment.name, parse_rule(segment.rule))

    @classmethod
    def of_rule(cls, id: str, key: str, name: str, rule: Rule) -> Target:
        reads = tuple(sorted(event_reads(rule).items()))
        return cls(id, key, name, rule, dependencies(rule).segments, reads, engine.compiled(rule))


def context(
    session: Session,
    *,
    now: datetime,
    candidates: Sequence[str] | None = None,
    segment_ids: Mapping[str, str] | None = None,
) -> compiler.Context:
    return compiler.Context(
        now=now,
        timezones=compiler.timezones(session, candidates),
        segment_ids=repository.key_ids(session) if segment_ids is None else segment_ids,
        candidates=candidates,
    )


def compute(session: Session, segment: Segment, *, now: datetime | None = None) -> ComputeResult:
    """Evaluate the rule for every customer (one statement) and write the difference."""
    now = now or clock.now()
    target = Target.of(segment)
    holds = set(compiler.member_ids(session, target.rule, context(session, now=now)))
    current = repository.member_ids(session, segment.id)
    diff = Diff(entered=sorted(holds - current), exited=sorted(current - holds))
    write_diff(session, target, diff, now=now)
    repository.set_computed(session, segment.id, members=len(holds), at=now)
    repository.refresh_statistics(session, rows_changed=len(diff.entered) + len(diff.exited))
    return ComputeResult(
        key=segment.key,
        members=len(holds),
        entered=len(diff.entered),
        exited=len(diff.exited),
        computed_at=now,
    )


def reevaluate(
    session: Session,
    segments: Sequence[Target],
    customer_ids: Collection[str],
    *,
    now: datetime,
    segment_ids: Mapping[str, str] | None = None,
    only: Mapping[str, AbstractSet[str]] | None = None,
    expect_version: repository.Version | None = None,
) -> dict[str, Diff]:
    """Re-evaluate the given segments for a few customers, those referred to by others first
    (so "member of segment X" reads X's fresh membership); write and answer each diff.

    `only` (customer id -> segment keys) narrows the work when each customer's change woke
    different segments: a customer is re-checked for the segments named for them, and keeps
    the others as they are. Without it, every segment is re-checked for every customer.

    `expect_version`: the segments' version the targets were taken from, checked with the
    first read, before anything is written (repository.SegmentsChanged when it moved)."""
    if not segments or not customer_ids:
        return {}
    candidates = sorted(customer_ids)
    segment_ids = repository.key_ids(session) if segment_ids is None else segment_ids
    diffs: dict[str, Diff] = {}
    for level in levels(segments):
        checks = {t.id: _checked(t, candidates, only) for t in level}
        holds, current = _evaluate(
            session,
            level,
            candidates,
            now=now,
            segment_ids=segment_ids,
            checks=checks,
            expect_version=expect_version,
        )
        expect_version = None  # checked before the first write
        changed: list[tuple[Target, Diff]] = []
        for segment in level:
            checked = checks[segment.id]
            now_in = holds.get(segment.id, set()) & checked
            was_in = {c for s, c in current if s == segment.id} & checked
            diff = Diff(entered=sorted(now_in - was_in), exited=sorted(was_in - now_in))
            if diff.entered or diff.exited:
                changed.append((segment, diff))
                diffs[segment.id] = diff
        write_diffs(session, changed, now=now)
        repository.add_to_counts(
            session, {t.id: len(d.entered) - len(d.exited) for t, d in changed}
        )
    return diffs


def _checked(
    target: Target, candidates: list[str], only: Mapping[str, AbstractSet[str]] | None
) -> set[str]:
    if only is None:
        return set(candidates)
    return {c for c in candidates if target.key in only.get(c, ())}


# Up to this many customers, rules run in Python over their loaded rows (engine.py): a few
# small reads beat building one SQL statement for many rules. Beyond it (a sweep that finds
# thousands of customers past a window edge), one SQL statement per round (compiler.py).
PYTHON_EVALUATION_MAX = 200


def holds_for(
    session: Session, rule: Rule, candidates: Sequence[str], *, now: datetime
) -> set[str]:
    """Which candidates an unsaved rule holds for (a journey's branch condition)."""
    target = Target.of_rule("condition", "", "", rule)
    segment_ids = repository.key_ids(session) if target.refers else {}
    ordered = sorted(set(candidates))
    found, _ = _evaluate(
        session,
        [target],
        ordered,
        now=now,
        segment_ids=segment_ids,
        checks={target.id: set(ordered)},
        memberships=False,
    )
    return found.get(target.id, set())


def _evaluate(
    session: Session,
    targets: Sequence[Target],
    candidates: list[str],
    *,
    now: datetime,
    segment_ids: Mapping[str, str],
    checks: Mapping[str, AbstractSet[str]],
    memberships: bool = True,
    expect_version: repository.Version | None = None,
) -> tuple[dict[str, set[str]], set[tuple[str, str]]]:
    """Which of its checked candidates each target's rule holds for, by segment id; and,
    with `memberships`, the candidates' current (segment id, customer id) memberships of
    the targets."""
    own = [t.id for t in targets] if memberships else []
    if len(candidates) > PYTHON_EVALUATION_MAX:
        if expect_version is not None:
            repository.check_version(session, expect_version)
        ctx = context(session, now=now, candidates=candidates, segment_ids=segment_ids)
        found = compiler.evaluate_for(session, {t.id: t.rule for t in targets}, ctx)
        current = repository.members_among(session, own, candidates) if own else set()
        return found, current
    # One read of memberships serves both: those the rules refer to, and the targets' own.
    referred = {k: v for k, v in segment_ids.items() if any(k in t.refers for t in targets)}
    wanted = referred | {t.key: t.id for t in targets if memberships}
    people = repository.load_people(
        session,
        candidates,
        event_reads=_joined_reads(targets),
        now=now,
        segment_ids=wanted,
        expect_version=expect_version,
    )
    holds = {
        t.id: {p.id for p in people if p.id in checks[t.id] and t.check(p, now)} for t in targets
    }
    current = {(t.id, p.id) for t in targets if memberships for p in people if t.key in p.segments}
    return holds, current


def _joined_reads(targets: Sequence[Target]) -> dict[str, EventRead]:
    joined: dict[str, EventRead] = {}
    for target in targets:
        for name, read in target.event_reads:
            joined[name] = read if name not in joined else joined[name].joined(read)
    return joined


def levels(segments: Sequence[TargetT]) -> list[list[TargetT]]:
    """Segments in rounds: each round refers only to segments of earlier rounds (or to
    segments not being re-evaluated). Definitions are acyclic, checked when saved."""
    pending = {s.key: s for s in segments}
    refers = {s.key: _refers(s) for s in segments}
    levels: list[list[TargetT]] = []
    while pending:
        ready = [s for key, s in pending.items() if not (refers[key] & pending.keys())]
        if not ready:  # only a cycle stored before validation could do this
            ready = list(pending.values())
        levels.append(sorted(ready, key=lambda s: s.key))
        for segment in ready:
            pending.pop(segment.key)
    return levels


def _refers(segment: Segment | Target) -> frozenset[str]:
    if isinstance(segment, Target):
        return segment.refers
    return dependencies(parse_rule(segment.rule)).segments


def write_diff(session: Session, segment: Target, diff: Diff, *, now: datetime) -> None:
    write_diffs(session, [(segment, diff)], now=now)


def write_diffs(session: Session, changes: Sequence[tuple[Target, Diff]], *, now: datetime) -> None:
    """Members, history rows and timeline events of every segment's diff, one statement per
    table for them all (a batch of events moves many customers in and out of many segments)."""
    if not changes:
        return
    repository.add_memberships(
        session, [(t.id, c) for t, diff in changes for c in diff.entered], now
    )
    repository.end_memberships(
        session, [(t.id, c) for t, diff in changes for c in diff.exited], now
    )
    events: list[customers.SystemEvent] = []
    for segment, diff in changes:
        events += _events(segment, diff.entered, name=ENTERED, now=now)
        events += _events(segment, diff.exited, name=EXITED, now=now)
    customers.record_system_events(session, events, new_keys=True)  # keys: see _events


def _events(
    segment: Target, customer_ids: Iterable[str], *, name: str, now: datetime
) -> list[customers.SystemEvent]:
    properties = {"segment_id": segment.id, "segment_key": segment.key, "segment": segment.name}
    return [
        customers.SystemEvent(
            customer_id=customer_id,
            name=name,
            properties=properties,
            timestamp=now,
            key=f"{name}:{new_id()}",
        )
        for customer_id in customer_ids
    ]


def remove_customer(session: Session, customer_id: str, *, now: datetime) -> None:
    """A profile is about to go (merged or erased): end its memberships so counts stay right.
    No exit events: the timeline goes with the profile or moves to the survivor, who is
    re-evaluated next."""
    segment_ids = repository.segment_ids_of(session, customer_id)
    repository.end_memberships(session, [(s, customer_id) for s in segment_ids], now)
    repository.add_to_counts(session, dict.fromkeys(segment_ids, -1))
