"""A journey's definition: trigger, entry rules, exit criteria, goal and a graph of nodes.

The JSON form (YAML through the CLI) is validated here with pydantic, each node by the model
its kind registered in `nodes.py`, then checked as a graph (`graph.py`). Nothing here reads
the database; references to templates and segments are checked by the service.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from regulars.kit.zones import valid_zone

_DURATION = re.compile(r"^\s*(\d{1,6})\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = timedelta(days=3660)


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '24h', '3d', '2w' as a timedelta; ValueError says the accepted form."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"duration {text!r}: write a number and a unit s, m, h, d or w ('3d')")
    duration = timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
    if duration > MAX_DURATION:
        raise ValueError(f"duration {text!r} is over ten years")
    return duration


def _signed_duration(text: str) -> timedelta:
    stripped = text.strip()
    if stripped.startswith("-"):
        return -parse_duration(stripped[1:])
    return parse_duration(stripped.removeprefix("+"))


Duration = Annotated[str, Field(min_length=2, max_length=20)]
Scalar = str | int | float | bool | None
Where = dict[Annotated[str, Field(min_length=1, max_length=200)], Scalar]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Status(StrEnum):
    DRAFT = "draft"
    LIVE = "live"
    PAUSED = "paused"
    ARCHIVED = "archived"


# --- triggers ---


class EventTrigger(Strict):
    """A run starts when the customer performs `event` with properties matching `where`."""

    type: Literal["event"]
    event: str = Field(min_length=1, max_length=200)
    where: Where = Field(default_factory=dict)


class SegmentTrigger(Strict):
    """A run starts when the customer enters (or exits) a segment."""

    type: Literal["segment"]
    segment: str = Field(min_length=1, max_length=100)
    on: Literal["entered", "exited"] = "entered"


class EventDateTrigger(Strict):
    """A run starts at a moment relative to an event: `offset` from the date in `property`
    (the event's own timestamp when no property is named): 24 hours before
    `Appointment Booked.start` is `{"event": "Appointment Booked", "property": "start",
    "offset": "-24h"}`. A moment already past when the event arrives starts the run at once,
    unless `skip_past`."""

    type: Literal["event_date"]
    event: str = Field(min_length=1, max_length=200)
    property: str | None = Field(default=None, min_length=1, max_length=200)
    offset: Duration = "0s"
    where: Where = Field(default_factory=dict)
    skip_past: bool = False

    @field_validator("offset")
    @classmethod
    def _offset(cls, value: str) -> str:
        _signed_duration(value)
        return value

    def offset_delta(self) -> timedelta:
        return _signed_duration(self.offset)


class AnniversaryTrigger(Strict):
    """Every year on the date in a profile trait (a birthday), at `at` in the customer's own
    time zone, or `days_before` it. One run per customer and year."""

    type: Literal["anniversary"]
    trait: str = Field(pattern=r"^[A-Za-z0-9_ -]{1,64}(\.[A-Za-z0-9_ -]{1,64}){0,7}$")
    at: time = time(9, 0)
    days_before: int = Field(default=0, ge=0, le=60)


class ApiTrigger(Strict):
    """Runs start only when asked: `POST /api/journeys/{key}/runs`."""

    type: Literal["api"]


class ScheduleTrigger(Strict):
    """Every member of a segment enters at once: at `at` (once), or every day at
    `daily_at` in `timezone`."""

    type: Literal["schedule"]
    segment: str = Field(min_length=1, max_length=100)
    at: datetime | None = None
    daily_at: time | None = None
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _one_moment(self) -> ScheduleTrigger:
        if (self.at is None) == (self.daily_at is None):
            raise ValueError("give exactly one of at (a date and time) or daily_at (HH:MM)")
        if self.at is not None and self.at.tzinfo is None:
            raise ValueError("at needs a time zone offset, e.g. 2026-12-01T09:00:00+01:00")
        if not valid_zone(self.timezone):
            raise ValueError(f"unknown time zone {self.timezone!r}: use an IANA name")
        return self


Trigger = Annotated[
    EventTrigger
    | SegmentTrigger
    | EventDateTrigger
    | AnniversaryTrigger
    | ApiTrigger
    | ScheduleTrigger,
    Field(discriminator="type"),
]


# --- entry, exit, goal ---


class Reentry(StrEnum):
    NEVER = "never"  # once per customer (per entry key) for the journey's life
    AFTER_EXIT = "after_exit"  # again once the previous run ended
    INTERVAL = "interval"  # again once `min_interval` passed since the last entry


class Entry(Strict):
    reentry: Reentry = Reentry.AFTER_EXIT
    min_interval: Duration | None = None
    # A trigger property that names one run: one run per order however often it repeats.
    key: str | None = Field(default=None, min_length=1, max_length=200)
    # Runs in flight per customer: by default one, or up to 20 (one per key) with a key.
    max_concurrent: int | None = Field(default=None, ge=1, le=100)
    per_hour: int | None = Field(default=None, ge=1, le=10_000_000)  # entry throttle

    @model_validator(mode="after")
    def _interval(self) -> Entry:
        if (self.reentry is Reentry.INTERVAL) != (self.min_interval is not None):
            raise ValueError("min_interval goes with reentry 'interval', and only with it")
        if self.min_interval is not None:
            parse_duration(self.min_interval)
        return self

    @property
    def concurrent_runs(self) -> int:
        if self.max_concurrent is not None:
            return self.max_concurrent
        return 1 if self.key is None else 20


class ExitOnEvent(Strict):
    """The run ends when the customer performs `event` (matching `where`, and equal to the
    trigger event in each property of `match`)."""

    type: Literal["event"]
    event: str = Field(min_length=1, max_length=200)
    where: Where = Field(default_factory=dict)
    match: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(default_factory=list)


class ExitOnSegment(Strict):
    """The run ends when the customer leaves (or joins) a segment."""

    type: Literal["segment"]
    segment: str = Field(min_length=1, max_length=100)
    on: Literal["exited", "entered"] = "exited"


ExitCriterion = Annotated[ExitOnEvent | ExitOnSegment, Field(discriminator="type")]


class Goal(Strict):
    """A conversion: `event` within `within` of entering, its `value` property as revenue."""

    event: str = Field(min_length=1, max_length=200)
    within: Duration = "7d"
    where: Where = Field(default_factory=dict)
    value: str | None = Field(default="revenue", min_length=1, max_length=200)

    @field_validator("within")
    @classmethod
    def _within(cls, value: str) -> str:
        parse_duration(value)
        return value


class Definition(Strict):
    """A journey version's whole behaviour. `nodes` maps node ids to node bodies (each with a
    `type`); `start` is the first node."""

    trigger: Trigger
    entry: Entry = Field(default_factory=Entry)
    exit: list[ExitCriterion] = Field(default_factory=list, max_length=20)
    goal: Goal | None = None
    start: str = Field(min_length=1, max_length=64)
    nodes: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")], dict[str, Any]] = Field(
        min_length=1, max_length=200
    )
