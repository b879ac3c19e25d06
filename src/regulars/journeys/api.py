"""REST API of the journeys domain: definitions (draft, validate, publish, pause, resume,
archive), statistics, runs and the run inspector, and the blueprints shipped with regulars.

Reads and validations need scope read; saving, publishing, pausing, archiving, starting runs
and installing blueprints need scope write. Routes with a fixed segment after /journeys/
(validate, runs, blueprints) are declared before /journeys/{key} so they win.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query

from regulars.db import session_scope
from regulars.errors import NotFound
from regulars.identity.api import Caller, require
from regulars.identity.roles import Permission
from regulars.journeys import blueprints, service
from regulars.journeys.schemas import (
    BlueprintRead,
    JourneyCreate,
    JourneyPage,
    JourneyRead,
    JourneyStats,
    JourneyUpdate,
    PublishRequest,
    RunCreate,
    RunDetail,
    RunList,
    RunRead,
    ValidationReport,
)

router = APIRouter(prefix="/api", tags=["journeys"])

can_read = require(Permission.JOURNEYS_READ)
can_write = require(Permission.JOURNEYS_WRITE)

MAX_LIMIT = 200


def _found(read: JourneyRead | None, key: str) -> JourneyRead:
    if read is None:
        raise NotFound(f"journey {key!r} not found")
    return read


@router.get("/journeys", response_model=JourneyPage, summary="Journeys by key")
def list_journeys(
    cursor: str | None = Query(None, description="next_cursor of the previous page."),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    _caller: Caller = Depends(can_read),
) -> JourneyPage:
    with session_scope(readonly=True) as session:
        return service.list_page(session, cursor=cursor, limit=limit)


@router.post("/journeys", response_model=JourneyRead, status_code=201, summary="Save a draft")
def create_journey(data: JourneyCreate, _caller: Caller = Depends(can_write)) -> JourneyRead:
    """A well-formed definition is saved as a draft; templates and segments it names are
    checked when it is validated or published. A 422 names the path of each problem."""
    with session_scope() as session:
        return service.create(session, data)


@router.post(
    "/journeys/validate", response_model=ValidationReport, summary="Check an unsaved definition"
)
def validate_definition(
    definition: dict[str, Any] = Body(..., description="A definition: trigger, nodes, ..."),
    _caller: Caller = Depends(can_read),
) -> ValidationReport:
    """Every problem of the definition, each with its path; nothing is saved."""
    with session_scope(readonly=True) as session:
        return service.validate_definition(session, definition)


# --- blueprints ---


@router.get("/journeys/blueprints", response_model=list[BlueprintRead], summary="Blueprints")
def list_blueprints(_caller: Caller = Depends(can_read)) -> list[BlueprintRead]:
    """Ready-made journeys: what each does and the events the store must send for it."""
    return [BlueprintRead.model_validate(b) for b in blueprints.all_blueprints()]


@router.post(
    "/journeys/blueprints/{key}",
    response_model=JourneyRead,
    status_code=201,
    summary="Install a blueprint",
)
def install_blueprint(
    key: str,
    publish: bool = Query(True, description="false: leave the journey as a draft."),
    _caller: Caller = Depends(can_write),
) -> JourneyRead:
    """Saves the templates it needs that do not exist yet and creates its journey (a 404
    for an unknown blueprint, a 409 when a journey with its key exists)."""
    with session_scope() as session:
        return service.install_blueprint(session, key, publish_it=publish)


# --- runs ---


@router.get("/journeys/runs/{run_id}", response_model=RunDetail, summary="The run inspector")
def get_run(run_id: str, _caller: Caller = Depends(can_read)) -> RunDetail:
    """The path one customer took: each node, the edge taken, why, and the message sent."""
    with session_scope(readonly=True) as session:
        found = service.run_detail(session, run_id)
    if found is None:
        raise NotFound(f"no journey run {run_id!r}")
    return found


@router.get(
    "/customers/{customer_id}/journeys", response_model=RunList, summary="A customer's runs"
)
def customer_runs(customer_id: str, _caller: Caller = Depends(can_read)) -> RunList:
    with session_scope(readonly=True) as session:
        return service.runs_of_customer(session, customer_id)


# --- one journey ---


@router.get("/journeys/{key}", response_model=JourneyRead, summary="One journey")
def get_journey(key: str, _caller: Caller = Depends(can_read)) -> JourneyRead:
    with session_scope(readonly=True) as session:
        return _found(service.get(session, key), key)


@router.patch("/journeys/{key}", response_model=JourneyRead, summary="Change the draft")
def update_journey(
    key: str, data: JourneyUpdate, _caller: Caller = Depends(can_write)
) -> JourneyRead:
    """Runs go on with the live version until the draft is published."""
    with session_scope() as session:
        return service.update(session, key, data)


@router.post("/journeys/{key}/validate", response_model=ValidationReport, summary="Check the draft")
def validate_draft(key: str, _caller: Caller = Depends(can_read)) -> ValidationReport:
    with session_scope(readonly=True) as session:
        return service.validate(session, key)


@router.post("/journeys/{key}/publish", response_model=JourneyRead, summary="Publish the draft")
def publish_journey(
    key: str,
    data: PublishRequest | None = None,
    _caller: Caller = Depends(can_write),
) -> JourneyRead:
    """The draft becomes the next live version (a 422 with `draft.` paths when it is not
    valid). Runs in flight finish on their version unless `migrate_runs`."""
    migrate = data.migrate_runs if data is not None else False
    with session_scope() as session:
        return service.publish(session, key, migrate_runs=migrate)


@router.post("/journeys/{key}/pause", response_model=JourneyRead, summary="Pause")
def pause_journey(key: str, _caller: Caller = Depends(can_write)) -> JourneyRead:
    """No run starts and runs stand still; a 409 unless the journey is live."""
    with session_scope() as session:
        return service.pause(session, key)


@router.post("/journeys/{key}/resume", response_model=JourneyRead, summary="Resume")
def resume_journey(key: str, _caller: Caller = Depends(can_write)) -> JourneyRead:
    """A 409 unless the journey is paused."""
    with session_scope() as session:
        return service.resume(session, key)


@router.post("/journeys/{key}/archive", response_model=JourneyRead, summary="Archive")
def archive_journey(key: str, _caller: Caller = Depends(can_write)) -> JourneyRead:
    """Runs in flight end (reason `archived`); nothing starts again."""
    with session_scope() as session:
        return service.archive(session, key)


@router.get("/journeys/{key}/stats", response_model=JourneyStats, summary="How it is doing")
def journey_stats(key: str, _caller: Caller = Depends(can_read)) -> JourneyStats:
    """Runs, conversions and revenue; per node and per arm, with the uplift against the
    holdout and its 95% confidence interval."""
    with session_scope(readonly=True) as session:
        return service.stats_of(session, key)


@router.post("/journeys/{key}/runs", response_model=RunRead, status_code=201, summary="Start a run")
def start_run(key: str, data: RunCreate, _caller: Caller = Depends(can_write)) -> RunRead:
    """Starts a run for one customer now; a 409 when the journey is not live or its entry
    rules keep the customer out."""
    with session_scope() as session:
        return service.start_run(session, key, data)
