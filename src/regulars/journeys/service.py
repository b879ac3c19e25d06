"""The journeys domain's public verbs: what the API, CLI, tasks and other domains call.

Work lives in sub-modules: `definitions` (drafts, validation, publishing), `enrollment`
(entry rules, and what events do to runs), `execution` (moving runs along), `schedules`
(calendar triggers) and `stats`. Importing this module registers the event listener with
the customers domain, so every process that stores events starts and wakes runs in the same
transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.customers import service as customers
from regulars.errors import Conflict, NotFound, ValidationFailed
from regulars.journeys import (
    blueprints,
    catalog,
    definitions,
    enrollment,
    execution,
    files,
    repository,
    schedules,
    stats,
)
from regulars.journeys.definition import ApiTrigger, Status
from regulars.journeys.enrollment import Entrant, trigger_of
from regulars.journeys.graph import DefinitionInvalid, Graph, compile_graph
from regulars.journeys.models import JourneyRun, JourneyStep
from regulars.journeys.schemas import (
    BlueprintRead,
    JourneyCreate,
    JourneyPage,
    JourneyRead,
    JourneyStats,
    JourneyUpdate,
    RunCreate,
    RunDetail,
    RunList,
    RunRead,
    StepRead,
    ValidationReport,
)
from regulars.kit import clock
from regulars.kit.pagination import decode_cursor, encode_cursor
from regulars.messages import service as messages
from regulars.messages.schemas import DeliveryRead
from regulars.segments import service as segments

customers.on_events(enrollment.on_events)

__all__ = [
    "advance_due",
    "archive",
    "blueprint_list",
    "create",
    "enroll_scheduled",
    "export_yaml",
    "get",
    "graph_of",
    "import_yaml",
    "inspect_run",
    "install_blueprint",
    "list_page",
    "pause",
    "publish",
    "recent_runs",
    "resume",
    "run_detail",
    "runs_of_customer",
    "start_run",
    "stats_of",
    "summaries",
    "update",
    "validate",
    "validate_definition",
    "webhook_secret",
]

advance_due = execution.advance_due
enroll_scheduled = schedules.enroll_scheduled


def any_due(session: Session, *, now: datetime) -> bool:
    """Whether a run is due (a read: the worker skips the claim's write lock when not)."""
    return repository.any_due(session, now=now)


def due_run_ids(session: Session, *, now: datetime, limit: int) -> list[str]:
    """The runs due now, claimed for this transaction (a failed batch's, to retry alone)."""
    return [row.id for row in repository.claim_due(session, now=now, limit=limit)]


def record_run_failure(session: Session, run_id: str, *, error: str, now: datetime) -> None:
    """Keep the error on the run and try it again later, or end it after the last retry."""
    run = repository.get_run(session, run_id)
    failures = run.failures if run is not None else 0
    retry = execution.retry_at(failures, now=now)
    repository.record_failure(session, run_id, error=error, retry_at=retry, now=now)


def create(session: Session, data: JourneyCreate) -> JourneyRead:
    return definitions.journey_read(session, definitions.create(session, data))


def update(session: Session, key: str, data: JourneyUpdate) -> JourneyRead:
    return definitions.journey_read(session, definitions.update(session, key, data))


def get(session: Session, key: str) -> JourneyRead | None:
    journey = definitions.find(session, key)
    return definitions.journey_read(session, journey) if journey else None


def list_page(session: Session, *, cursor: str | None, limit: int) -> JourneyPage:
    after = decode_cursor(cursor, 1)[0] if cursor else None
    found = repository.list_after(session, after=after, limit=limit + 1)
    more, page = len(found) > limit, found[:limit]
    return JourneyPage(
        items=[definitions.journey_read(session, j) for j in page],
        next_cursor=encode_cursor(page[-1].key) if more and page else None,
    )


def validate_definition(session: Session, raw: dict[str, Any]) -> ValidationReport:
    return definitions.validate(session, raw)


def validate(session: Session, key: str) -> ValidationReport:
    """Check a journey's draft, with what it refers to."""
    return definitions.validate(session, definitions.require(session, key).draft)


def publish(session: Session, key: str, *, migrate_runs: bool = False) -> JourneyRead:
    journey = definitions.publish(session, key, migrate_runs=migrate_runs)
    return definitions.journey_read(session, journey)


def pause(session: Session, key: str) -> JourneyRead:
    return definitions.journey_read(session, definitions.pause(session, key))


def resume(session: Session, key: str) -> JourneyRead:
    return definitions.journey_read(session, definitions.resume(session, key))


def archive(session: Session, key: str) -> JourneyRead:
    return definitions.journey_read(session, definitions.archive(session, key))


# --- runs ---


def start_run(session: Session, key: str, data: RunCreate) -> RunRead:
    """Start a run for one customer now (any live journey; the only way into one whose
    trigger is `api`). A 409 when the entry rules refuse it."""
    journey = definitions.require(session, key)
    if journey.status != Status.LIVE or journey.live_version is None:
        raise Conflict(f"journey {journey.key!r} is {journey.status}: publish it first")
    customer_id = customers.resolve_id(session, data.customer_id)
    if customer_id is None:
        raise NotFound(f"customer {data.customer_id!r} not found")
    version = next((v for v in catalog.current(session).live if v.journey_id == journey.id), None)
    assert version is not None, "a live journey is in the catalog"
    now = clock.now()
    name = "api" if isinstance(version.graph.definition.trigger, ApiTrigger) else "manual"
    entrant = Entrant(customer_id, trigger_of(name, data.properties, now), now)
    if not enrollment.enroll(session, version, [entrant], now=now):
        raise Conflict(
            f"the entry rules of {journey.key!r} keep this customer out now (a run in flight, "
            "re-entry or throttle)"
        )
    started = repository.newest_run(session, journey.id, customer_id)
    assert started is not None, "enroll answered that it started one"
    return _run_read(started, {journey.id: journey.key})


def runs_of_customer(session: Session, customer_id: str) -> RunList:
    resolved = customers.resolve_id(session, customer_id)
    if resolved is None:
        raise NotFound(f"customer {customer_id!r} not found")
    runs = repository.runs_of(session, resolved)
    keys = repository.journey_keys(session, [r.journey_id for r in runs])
    return RunList(items=[_run_read(r, keys) for r in runs])


def run_detail(session: Session, run_id: str) -> RunDetail | None:
    """The run inspector: each step with the node's type, the edge taken and the message."""
    run = repository.get_run(session, run_id)
    if run is None:
        return None
    keys = repository.journey_keys(session, [run.journey_id])
    graph = catalog.graph_of(session, run.journey_id, run.version)
    steps = [
        _step_read(step, graph.nodes.get(step.node_id))
        for step in repository.steps_of(session, run.id)
    ]
    return RunDetail(**_run_read(run, keys).model_dump(), steps=steps)


def _run_read(run: JourneyRun, keys: dict[str, str]) -> RunRead:
    return RunRead(
        id=run.id,
        journey_key=keys.get(run.journey_id, run.journey_id),
        version=run.version,
        customer_id=run.customer_id,
        entry_key=run.entry_key,
        state=run.state,
        node_id=run.node_id,
        due_at=run.due_at,
        listen_for=run.listen_for,
        variant=run.variant,
        trigger=run.trigger,
        entered_at=run.entered_at,
        ended_at=run.ended_at,
        exit_reason=run.exit_reason,
        converted_at=run.converted_at,
        conversion_value=run.conversion_value,
    )


def _step_read(step: JourneyStep, node: object) -> StepRead:
    return StepRead(
        seq=step.seq,
        node_id=step.node_id,
        node_type=getattr(node, "kind", None),
        outcome=step.outcome,
        next_node=step.next_node,
        delivery_id=step.delivery_id,
        detail=step.detail,
        at=step.at,
    )


def stats_of(session: Session, key: str) -> JourneyStats:
    return stats.of(session, definitions.require(session, key))


# --- files and blueprints ---


def export_yaml(session: Session, key: str) -> str:
    """The journey as a YAML document `import_yaml` takes back (journeys in a repository)."""
    journey = definitions.require(session, key)
    try:
        definition = compile_graph(journey.draft).canonical()
    except DefinitionInvalid:  # a draft saved under older rules: export it as it is
        definition = journey.draft
    document = {
        "key": journey.key,
        "name": journey.name,
        "description": journey.description,
        "definition": definition,
    }
    return files.write_yaml(document)


def import_yaml(session: Session, text: str) -> JourneyRead:
    """Create the journey, or replace its draft when the key exists."""
    try:
        document = files.read_yaml(text)
    except yaml.YAMLError as exc:
        raise ValidationFailed(f"not valid YAML: {exc}", code="invalid_yaml") from None
    if not isinstance(document, dict):
        raise ValidationFailed("a journey file is a mapping with key, name and definition")
    try:
        data = JourneyCreate.model_validate(document)
    except PydanticValidationError as exc:
        problems = [
            {"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
        first = problems[0]
        raise ValidationFailed(
            f"{first['path']}: {first['message']}", code="invalid_journey", details=problems
        ) from None
    if definitions.find(session, data.key) is None:
        return create(session, data)
    change = JourneyUpdate(name=data.name, description=data.description, definition=data.definition)
    return update(session, data.key, change)


def install_blueprint(session: Session, key: str, *, publish_it: bool = True) -> JourneyRead:
    """Save the blueprint's templates that do not exist yet, create its journey and (by
    default) publish it."""
    blueprint = blueprints.load(key)
    if definitions.find(session, blueprint.key) is not None:
        raise Conflict(f"journey {blueprint.key!r} exists: archive it or import under a new key")
    segments.ensure_builtins(session)  # blueprints such as win-back start from them
    for template in blueprint.templates:
        if messages.templates.get(session, template.key, template.channel) is None:
            messages.templates.save(session, template.key, template.channel, template.template)
    create(
        session,
        JourneyCreate(
            key=blueprint.key,
            name=blueprint.name,
            description=blueprint.description,
            definition=blueprint.definition,
        ),
    )
    if publish_it:
        return publish(session, blueprint.key)
    read = get(session, blueprint.key)
    assert read is not None
    return read


def webhook_secret() -> str:
    """The secret journey webhook nodes sign with: REGULARS_JOURNEY_WEBHOOK_SECRET, or one
    derived from the secret key."""
    configured = get_settings().journey_webhook_secret
    if configured:
        return configured
    return hashlib.sha256(f"journey-webhooks:{messages.links.secret()}".encode()).hexdigest()


# --- customers leaving, and the GDPR export ---


def follow_merge(session: Session, customer_id: str, survivor_id: str | None) -> None:
    """A merged profile's runs move to the survivor; an erased one's go (cascade)."""
    if survivor_id is not None:
        repository.move_customer(session, merged_id=customer_id, survivor_id=survivor_id)


def exported(session: Session, customer_id: str) -> dict[str, list[BaseModel]]:
    runs = repository.runs_of(session, customer_id, limit=100_000)
    keys = repository.journey_keys(session, [r.journey_id for r in runs])
    return {"journey_runs": [_run_read(r, keys) for r in runs]}


# --- the dashboard ---


@dataclass(frozen=True, slots=True)
class JourneySummary:
    """A journey as the dashboard lists it: runs, conversions and the uplift where known."""

    journey: JourneyRead
    runs: int
    in_flight: int
    conversions: int
    uplift: float | None  # the treatment's conversion rate minus the holdout's

    @property
    def conversion_rate(self) -> float | None:
        return self.conversions / self.runs if self.runs else None


@dataclass(frozen=True, slots=True)
class RunInspection:
    """The run inspector's page: the run and its steps, why it last failed, the messages."""

    run: RunDetail
    failures: int
    last_error: str | None
    deliveries: dict[str, DeliveryRead]


def summaries(session: Session, *, limit: int = 200) -> list[JourneySummary]:
    """The first `limit` journeys by key, each with its run counts (one grouped query for all)."""
    found = repository.list_after(session, after=None, limit=limit)
    counts: dict[str, list[tuple[str, str | None, int, int]]] = {j.id: [] for j in found}
    for journey_id, state, variant, runs, conversions in repository.run_counts_of(
        session, list(counts)
    ):
        counts[journey_id].append((state, variant, runs, conversions))
    return [_summary(definitions.journey_read(session, j), counts[j.id]) for j in found]


def _summary(
    journey: JourneyRead, counts: list[tuple[str, str | None, int, int]]
) -> JourneySummary:
    """(state, variant, runs, conversions) rows added up, with the uplift of the arms."""
    totals = {"runs": 0, "in_flight": 0, "conversions": 0}
    arms: dict[str, tuple[int, int]] = {}
    for state, variant, runs, conversions in counts:
        totals["runs"] += runs
        totals["in_flight"] += runs if state in ("active", "waiting") else 0
        totals["conversions"] += conversions
        before = arms.get(variant or "", (0, 0))
        arms[variant or ""] = (before[0] + runs, before[1] + conversions)
    return JourneySummary(journey=journey, uplift=_treatment_uplift(arms), **totals)


def _treatment_uplift(arms: dict[str, tuple[int, int]]) -> float | None:
    control = arms.get(stats.CONTROL)
    if control is None:
        return None
    treated = [v for k, v in arms.items() if k != stats.CONTROL]
    runs, conversions = sum(v[0] for v in treated), sum(v[1] for v in treated)
    interval = stats.uplift(conversions, runs, control[1], control[0])
    return interval.uplift if interval is not None else None


def blueprint_list() -> list[BlueprintRead]:
    return [BlueprintRead.model_validate(b) for b in blueprints.all_blueprints()]


def graph_of(session: Session, journey: JourneyRead) -> Graph | None:
    """The live version's graph, or the draft's before the first publish (None when the
    draft does not compile)."""
    if journey.live_version is not None:
        return catalog.graph_of(session, journey.id, journey.live_version)
    try:
        return compile_graph(journey.draft)
    except DefinitionInvalid:
        return None


def recent_runs(
    session: Session, journey: JourneyRead, *, customer: str | None, limit: int = 50
) -> RunList:
    """The journey's newest runs, or those of one customer (by id, external id or email; a
    Conflict when several customers have the email)."""
    customer_id = None
    if customer:
        customer_id = customers.find_customer(session, customer)  # follows merges too
        if customer_id is None:
            return RunList(items=[])
    runs = repository.runs_of_journey(session, journey.id, customer_id=customer_id, limit=limit)
    return RunList(items=[_run_read(r, {journey.id: journey.key}) for r in runs])


def inspect_run(session: Session, run_id: str) -> RunInspection | None:
    run = repository.get_run(session, run_id)  # held, so run_detail reads it from the session
    detail = run_detail(session, run_id)
    if detail is None or run is None:
        return None
    deliveries = {}
    for step in detail.steps:
        if step.delivery_id is not None:
            found = messages.get_delivery(session, step.delivery_id, with_content=False)
            if found is not None:
                deliveries[step.delivery_id] = found
    return RunInspection(detail, run.failures, run.last_error, deliveries)


customers.on_removal(follow_merge)
customers.on_export(exported)
