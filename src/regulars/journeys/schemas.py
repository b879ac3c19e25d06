"""What the journeys API and CLI take and give."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from regulars.journeys.blueprints import EventSpec
from regulars.journeys.definition import Status

KEY_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,99}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Words the API's paths use beside journey keys (/api/journeys/blueprints, .../validate).
RESERVED_KEYS = frozenset({"blueprints", "validate", "runs"})


class JourneyCreate(_In):
    key: str = Field(pattern=KEY_PATTERN, description="Stable handle: lower case, digits, _ -")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    definition: dict[str, Any] = Field(description="Trigger, entry, exit, goal, nodes")

    @field_validator("key")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_KEYS:
            raise ValueError(f"{value!r} is a word of the API's paths; choose another key")
        return value


class JourneyUpdate(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    definition: dict[str, Any] | None = None


class PublishRequest(_In):
    # Move runs in flight to the new version (by node id) instead of letting them finish
    # on the version they started on.
    migrate_runs: bool = False


class JourneyRead(BaseModel):
    id: str
    key: str
    name: str
    description: str
    status: Status
    live_version: int | None
    draft: dict[str, Any]
    draft_changed: bool  # the draft differs from the live version
    created_at: datetime
    updated_at: datetime


class JourneyPage(BaseModel):
    items: list[JourneyRead]
    next_cursor: str | None


class ValidationProblem(BaseModel):
    path: str
    message: str


class ValidationReport(BaseModel):
    valid: bool
    problems: list[ValidationProblem]


class RunCreate(_In):
    """Start a run by API (journeys with an `api` trigger, or any live one by hand)."""

    customer_id: str = Field(min_length=1, max_length=100)
    properties: dict[str, Any] = Field(default_factory=dict)


class StepRead(BaseModel):
    seq: int
    node_id: str
    node_type: str | None
    outcome: str
    next_node: str | None
    delivery_id: str | None
    detail: str | None
    at: datetime


class RunRead(BaseModel):
    id: str
    journey_key: str
    version: int
    customer_id: str
    entry_key: str
    state: str
    node_id: str | None
    due_at: datetime | None
    listen_for: str | None
    variant: str | None
    trigger: dict[str, Any]
    entered_at: datetime
    ended_at: datetime | None
    exit_reason: str | None
    converted_at: datetime | None
    conversion_value: float | None


class RunDetail(RunRead):
    """The run inspector: the path one customer took, and why."""

    steps: list[StepRead]


class RunList(BaseModel):
    items: list[RunRead]


class NodeStats(BaseModel):
    node_id: str
    type: str
    entered: int
    waiting: int
    moved_on: int
    exited: int
    messages: int
    outcomes: dict[str, int]


class ArmStats(BaseModel):
    """One arm of the journey: a split path, the treatment, or the holdout's control."""

    variant: str
    runs: int
    conversions: int
    conversion_rate: float
    revenue: float
    uplift: float | None  # conversion rate minus the control's, in points of 1
    uplift_low: float | None  # its 95% confidence interval
    uplift_high: float | None


class JourneyStats(BaseModel):
    key: str
    version: int | None
    runs: int
    active: int
    completed: int
    exited: int
    conversions: int
    revenue: float
    throttled: int
    nodes: list[NodeStats]
    arms: list[ArmStats]


class BlueprintRead(BaseModel):
    """A shipped blueprint as listed: what it does and the events the store must send."""

    model_config = ConfigDict(from_attributes=True)

    key: str
    name: str
    description: str
    events: list[EventSpec]
