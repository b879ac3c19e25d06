"""Who is in a segment: full compute, re-evaluation of a few customers, and the diff written
as members, history rows and segment.entered / segment.exited events on the timeline."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
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
from regulars.segments.rules import Rule, dependencies, parse_rule
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
    event_names: frozenset[str]  # names of the events its rule reads

    @classmethod
    def of(cls, segment: Segment) -> Target:
        rule = parse_rule(segment.rule)
        deps = dependencies(rule)
        return cls(segment.id, segment.key, segment.name, rule, deps.segments, deps.event_names)


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
) -> dict[str, Diff]:
    """Re-evaluate the given segments for a few customers, those referred to by others first
    (so "member of segment X" reads X's fresh membership); write and answer each diff."""
    if not segments or not customer_ids:
        return {}
    candidates = sorted(customer_ids)
    segment_ids = repository.key_ids(session) if segment_ids is None else segment_ids
    diffs: dict[str, Diff] = {}
    for level in levels(segments):
        holds = _evaluate(session, level, candidates, now=now, segment_ids=segment_ids)
        current = repository.members_among(session, [s.id for s in level], candidates)
        for segment in level:
            now_in = holds.get(segment.id, set())
            was_in = {c for s, c in current if s == segment.id}
            diff = Diff(entered=sorted(now_in - was_in), exited=sorted(was_in - now_in))
            if diff.entered or diff.exited:
                write_diff(session, segment, diff, now=now)
                repository.add_to_count(session, segment.id, len(diff.entered) - len(diff.exited))
                diffs[segment.id] = diff
    return diffs


# Up to this many customers, rules run in Python over their loaded rows (engine.py): a few
# small reads beat building one SQL statement for many rules. Beyond it (a sweep that finds
# thousands of customers past a window edge), one SQL statement per round (compiler.py).
PYTHON_EVALUATION_MAX = 200


def holds_for(
    session: Session, rule: Rule, candidates: Sequence[str], *, now: datetime
) -> set[str]:
    """Which candidates an unsaved rule holds for (a journey's branch condition)."""
    deps = dependencies(rule)
    target = Target("condition", "", "", rule, deps.segments, deps.event_names)
    segment_ids = repository.key_ids(session) if deps.segments else {}
    found = _evaluate(session, [target], sorted(set(candidates)), now=now, segment_ids=segment_ids)
    return found.get(target.id, set())


def _evaluate(
    session: Session,
    targets: Sequence[Target],
    candidates: list[str],
    *,
    now: datetime,
    segment_ids: Mapping[str, str],
) -> dict[str, set[str]]:
    """Which candidates each target's rule holds for, by segment id."""
    if len(candidates) > PYTHON_EVALUATION_MAX:
        ctx = context(session, now=now, candidates=candidates, segment_ids=segment_ids)
        return compiler.evaluate_for(session, {t.id: t.rule for t in targets}, ctx)
    people = repository.load_people(
        session,
        candidates,
        event_names=frozenset().union(*(t.event_names for t in targets)),
        segment_ids={k: v for k, v in segment_ids.items() if any(k in t.refers for t in targets)},
    )
    return {t.id: {p.id for p in people if engine.holds(t.rule, p, now)} for t in targets}


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
    repository.add_members(session, segment.id, diff.entered, now)
    repository.remove_members(session, segment.id, diff.exited, now)
    customers.record_system_events(
        session,
        [
            *_events(segment, diff.entered, name=ENTERED, now=now),
            *_events(segment, diff.exited, name=EXITED, now=now),
        ],
    )


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
    for segment_id in repository.segment_ids_of(session, customer_id):
        repository.remove_members(session, segment_id, [customer_id], now)
        repository.add_to_count(session, segment_id, -1)
