"""Segment definitions: create, edit, delete, list; rules validated, references checked,
cycles refused; the built-in segments installed and kept up to date."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.errors import Conflict, NotFound, ValidationFailed
from regulars.kit import clock
from regulars.kit.ids import new_id
from regulars.kit.pagination import decode_cursor, encode_cursor
from regulars.segments import repository
from regulars.segments.builtin import builtin_segments
from regulars.segments.models import Segment
from regulars.segments.rules import (
    Rule,
    RuleInvalid,
    SegmentCondition,
    dependencies,
    dump_rule,
    parse_rule,
    walk,
)
from regulars.segments.schemas import SegmentCreate, SegmentPage, SegmentRead, SegmentUpdate


def validated_rule(raw: Mapping[str, Any] | object, *, field: str = "rule") -> Rule:
    """The parsed rule, or a 422 naming the path of every bad node."""
    try:
        return parse_rule(raw)
    except RuleInvalid as exc:
        details = [
            {"path": f"{field}.{e['path']}" if e["path"] else field, "message": e["message"]}
            for e in exc.errors
        ]
        raise ValidationFailed(
            f"{details[0]['path']}: {details[0]['message']}", code="invalid_rule", details=details
        ) from None


def segment_read(session: Session, segment: Segment) -> SegmentRead:
    return _read(segment, repository.member_counts(session, [segment])[segment.id])


def _read(segment: Segment, members: int) -> SegmentRead:
    rule = parse_rule(segment.rule)
    return SegmentRead(
        id=segment.id,
        key=segment.key,
        name=segment.name,
        description=segment.description,
        rule=segment.rule,
        builtin=segment.builtin,
        members_count=members,
        time_dependence=dependencies(rule).time.value,
        computed_at=segment.computed_at,
        created_at=segment.created_at,
        updated_at=segment.updated_at,
    )


def find(session: Session, key_or_id: str) -> Segment | None:
    return repository.get_by_key(session, key_or_id) or repository.get(session, key_or_id)


def require(session: Session, key_or_id: str) -> Segment:
    segment = find(session, key_or_id)
    if segment is None:
        raise NotFound(f"no segment with key or id {key_or_id!r}", details={"segment": key_or_id})
    return segment


def create(session: Session, data: SegmentCreate, *, builtin: bool = False) -> Segment:
    if repository.get_by_key(session, data.key) is not None:
        raise Conflict(f"a segment with key {data.key!r} exists", details={"key": data.key})
    rule = validated_rule(data.rule)
    _check_references(session, data.key, rule)
    now = clock.now()
    segment = Segment(
        id=new_id(),
        key=data.key,
        name=data.name,
        description=data.description,
        rule=dump_rule(rule),
        builtin=builtin,
        members_count=0,
        created_at=now,
        updated_at=now,
    )
    repository.add(session, segment)
    return segment


def update(session: Session, key_or_id: str, data: SegmentUpdate) -> tuple[Segment, bool]:
    """Apply the changes; answer the segment and whether its rule changed (then recompute)."""
    segment = require(session, key_or_id)
    if segment.builtin:
        raise Conflict(f"segment {segment.key!r} is built in and cannot be edited")
    rule_changed = False
    if data.rule is not None:
        rule = validated_rule(data.rule)
        _check_references(session, segment.key, rule)
        canonical = dump_rule(rule)
        rule_changed = canonical != segment.rule
        segment.rule = canonical
    if data.name is not None:
        segment.name = data.name
    if data.description is not None:
        segment.description = data.description
    segment.updated_at = clock.now()
    session.flush()
    return segment, rule_changed


def delete(session: Session, key_or_id: str) -> None:
    segment = require(session, key_or_id)
    if segment.builtin:
        raise Conflict(f"segment {segment.key!r} is built in and cannot be deleted")
    users = [s.key for s in repository.all_segments(session) if segment.key in _referenced(s)]
    if users:
        raise Conflict(
            f"segment {segment.key!r} is used by {', '.join(users)}: change those first",
            details={"used_by": users},
        )
    repository.remove(session, segment)


def list_page(session: Session, *, cursor: str | None, limit: int) -> SegmentPage:
    after = decode_cursor(cursor, 1)[0] if cursor else None
    rows = repository.list_segments(session, after_key=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    counts = repository.member_counts(session, rows)
    return SegmentPage(
        items=[_read(s, counts[s.id]) for s in rows],
        next_cursor=encode_cursor(rows[-1].key) if more else None,
    )


def _referenced(segment: Segment) -> set[str]:
    return set(dependencies(parse_rule(segment.rule)).segments)


def _check_references(session: Session, key: str, rule: Rule) -> None:
    """Every referenced segment exists and no chain of references leads back to `key`."""
    graph = {s.key: _referenced(s) for s in repository.all_segments(session)}
    graph[key] = {n.segment for n in walk(rule) if isinstance(n, SegmentCondition)}
    unknown = sorted(graph[key] - graph.keys())
    if unknown:
        raise ValidationFailed(
            f"rule refers to unknown segment {unknown[0]!r}",
            code="invalid_rule",
            details={"unknown_segments": unknown},
        )
    cycle = _cycle_from(key, graph)
    if cycle:
        raise ValidationFailed(
            f"segments may not refer to themselves: {' -> '.join(cycle)}",
            code="segment_cycle",
            details={"cycle": cycle},
        )


def _cycle_from(start: str, graph: Mapping[str, set[str]]) -> list[str] | None:
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in graph.get(node, set()):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def ensure_builtins(session: Session, *, now: datetime | None = None) -> list[Segment]:
    """Create the built-in segments that are missing and bring the others' rules up to date
    with the settings; answer those created or changed (they need a compute)."""
    now = now or clock.now()
    changed: list[Segment] = []
    for builtin in builtin_segments(get_settings()):
        rule = dump_rule(parse_rule(builtin.rule))
        segment = repository.get_by_key(session, builtin.key)
        if segment is None:
            data = SegmentCreate(
                key=builtin.key, name=builtin.name, description=builtin.description, rule=rule
            )
            changed.append(create(session, data, builtin=True))
        elif segment.rule != rule or segment.name != builtin.name:
            segment.rule, segment.name = rule, builtin.name
            segment.description, segment.updated_at = builtin.description, now
            changed.append(segment)
    session.flush()
    return changed
