"""Journeys as the author sees them: a draft to edit, checked, published as numbered
versions, paused, resumed and archived.

A draft must be well formed to be saved (a 422 names the path of each problem); whether
the templates and segments it names exist is checked when it is validated or published,
so a journey can be drafted before its templates are written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from regulars.errors import Conflict, NotFound, ValidationFailed
from regulars.journeys import catalog, repository
from regulars.journeys.definition import (
    ExitOnSegment,
    ScheduleTrigger,
    SegmentTrigger,
    Status,
)
from regulars.journeys.graph import DefinitionInvalid, Graph, compile_graph
from regulars.journeys.models import Journey, JourneyVersion
from regulars.journeys.nodes import Branch, Send
from regulars.journeys.schemas import (
    JourneyCreate,
    JourneyRead,
    JourneyUpdate,
    ValidationProblem,
    ValidationReport,
)
from regulars.kit import clock
from regulars.kit.ids import new_id
from regulars.messages import service as messages
from regulars.messages.models import MessageChannel
from regulars.segments import service as segments


def find(session: Session, key_or_id: str) -> Journey | None:
    return repository.get_by_key(session, key_or_id) or repository.get(session, key_or_id)


def require(session: Session, key_or_id: str) -> Journey:
    journey = find(session, key_or_id)
    if journey is None:
        raise NotFound(f"journey {key_or_id!r} not found")
    return journey


def well_formed(raw: dict[str, Any], *, field: str = "definition") -> Graph:
    """The compiled graph, or a 422 naming the path of every problem."""
    try:
        return compile_graph(raw)
    except DefinitionInvalid as exc:
        raise _invalid(exc.errors, field=field) from None


def _invalid(errors: list[dict[str, str]], *, field: str) -> ValidationFailed:
    details = [
        {"path": f"{field}.{e['path']}" if e["path"] else field, "message": e["message"]}
        for e in errors
    ]
    return ValidationFailed(
        f"{details[0]['path']}: {details[0]['message']}", code="invalid_journey", details=details
    )


def create(session: Session, data: JourneyCreate) -> Journey:
    if repository.get_by_key(session, data.key) is not None:
        raise Conflict(f"a journey with key {data.key!r} exists", details={"key": data.key})
    well_formed(data.definition)
    now = clock.now()
    journey = Journey(
        id=new_id(),
        key=data.key,
        name=data.name,
        description=data.description,
        status=Status.DRAFT,
        draft=data.definition,
        live_version=None,
        throttled=0,
        enrolled_until=None,
        created_at=now,
        updated_at=now,
    )
    session.add(journey)
    session.flush()
    return journey


def update(session: Session, key_or_id: str, data: JourneyUpdate) -> Journey:
    journey = require(session, key_or_id)
    _not_archived(journey)
    if data.definition is not None:
        well_formed(data.definition)
        journey.draft = data.definition
    if data.name is not None:
        journey.name = data.name
    if data.description is not None:
        journey.description = data.description
    journey.updated_at = clock.now()
    session.flush()
    return journey


def validate(session: Session, raw: dict[str, Any]) -> ValidationReport:
    """Every problem of a definition: its form, then what it refers to."""
    try:
        graph = compile_graph(raw)
    except DefinitionInvalid as exc:
        problems = [ValidationProblem(path=e["path"], message=e["message"]) for e in exc.errors]
        return ValidationReport(valid=False, problems=problems)
    problems = _reference_problems(session, graph, now=clock.now())
    return ValidationReport(valid=not problems, problems=problems)


def _reference_problems(
    session: Session, graph: Graph, *, now: datetime
) -> list[ValidationProblem]:
    problems: list[ValidationProblem] = []
    definition = graph.definition
    named_segments: list[tuple[str, str]] = []
    if isinstance(definition.trigger, SegmentTrigger | ScheduleTrigger):
        named_segments.append(("trigger.segment", definition.trigger.segment))
    trigger = definition.trigger
    if isinstance(trigger, ScheduleTrigger) and trigger.at is not None and trigger.at <= now:
        problems.append(ValidationProblem(path="trigger.at", message="this moment has passed"))
    for index, criterion in enumerate(definition.exit):
        if isinstance(criterion, ExitOnSegment):
            named_segments.append((f"exit.{index}.segment", criterion.segment))
    for path, key in named_segments:
        if not segments.exists(session, key):
            problems.append(ValidationProblem(path=path, message=f"no segment {key!r}"))
    for node_id, node in graph.nodes.items():
        problems += _node_problems(session, node_id, node)
    return problems


def _node_problems(session: Session, node_id: str, node: object) -> list[ValidationProblem]:
    path = f"nodes.{node_id}"
    if isinstance(node, Send):
        channels = messages.templates.by_key(session, node.template)
        if not channels:
            return [
                ValidationProblem(path=f"{path}.template", message=f"no template {node.template!r}")
            ]
        if node.channel != "auto" and MessageChannel(node.channel) not in channels:
            have = ", ".join(sorted(channels))
            message = f"template {node.template!r} has no {node.channel} version (it has {have})"
            return [ValidationProblem(path=f"{path}.channel", message=message)]
    if isinstance(node, Branch):
        try:
            segments.check_condition(node.condition, field=f"{path}.condition")
        except ValidationFailed as exc:
            details = exc.details if isinstance(exc.details, list) else []
            return [ValidationProblem(path=d["path"], message=d["message"]) for d in details] or [
                ValidationProblem(path=f"{path}.condition", message=exc.message)
            ]
    return []


def publish(session: Session, key_or_id: str, *, migrate_runs: bool = False) -> Journey:
    """Make the draft the live version. Runs in flight finish on the version they started
    on, or, with `migrate_runs`, move to the new one at the node of the same id."""
    journey = require(session, key_or_id)
    _not_archived(journey)
    report = validate(session, journey.draft)
    if not report.valid:
        raise _invalid([p.model_dump() for p in report.problems], field="draft")
    graph = compile_graph(journey.draft)
    now = clock.now()
    version = (journey.live_version or 0) + 1
    session.add(
        JourneyVersion(
            journey_id=journey.id, version=version, definition=journey.draft, published_at=now
        )
    )
    journey.live_version, journey.status, journey.updated_at = version, Status.LIVE, now
    # A schedule fires at its next moment after publishing, never at one already past.
    scheduled = isinstance(graph.definition.trigger, ScheduleTrigger)
    journey.enrolled_until = now if scheduled else None
    session.flush()
    if migrate_runs:
        repository.move_to_version(
            session, journey.id, version=version, node_ids=sorted(graph.nodes)
        )
    _changed(session)
    return journey


def pause(session: Session, key_or_id: str) -> Journey:
    """No new runs start and runs in flight stand still (their moments pass; they move on
    when resumed). Events still end runs and count goals."""
    journey = require(session, key_or_id)
    if journey.status != Status.LIVE:
        raise Conflict(f"journey {journey.key!r} is {journey.status}, not live")
    return _set_status(session, journey, Status.PAUSED)


def resume(session: Session, key_or_id: str) -> Journey:
    journey = require(session, key_or_id)
    if journey.status != Status.PAUSED:
        raise Conflict(f"journey {journey.key!r} is {journey.status}, not paused")
    return _set_status(session, journey, Status.LIVE)


def archive(session: Session, key_or_id: str) -> Journey:
    """Retire the journey: runs in flight end (reason `archived`), nothing starts again."""
    journey = require(session, key_or_id)
    repository.end_in_flight(session, journey.id, reason="archived", now=clock.now())
    return _set_status(session, journey, Status.ARCHIVED)


def _set_status(session: Session, journey: Journey, status: Status) -> Journey:
    journey.status, journey.updated_at = status, clock.now()
    _changed(session)
    return journey


def _changed(session: Session) -> None:
    """Events later in this transaction must see the journey as it is now."""
    session.flush()
    catalog.forget(session)


def _not_archived(journey: Journey) -> None:
    if journey.status == Status.ARCHIVED:
        raise Conflict(f"journey {journey.key!r} is archived")


def journey_read(session: Session, journey: Journey) -> JourneyRead:
    live = (
        repository.definition_of(session, journey.id, journey.live_version)
        if journey.live_version
        else None
    )
    return JourneyRead(
        id=journey.id,
        key=journey.key,
        name=journey.name,
        description=journey.description,
        status=journey.status,
        live_version=journey.live_version,
        draft=journey.draft,
        draft_changed=live != journey.draft,
        created_at=journey.created_at,
        updated_at=journey.updated_at,
    )
