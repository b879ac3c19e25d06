"""The nodes a journey is drawn with, and what each one does: pure logic, no database.

Each node kind is a pydantic model with `step(run, observed, now) -> Transition`. The service
gathers what a node reads (a branch's condition, a wait's awaited event) into `Observed`,
calls `step`, and carries out the transition's effects. Later domains add node kinds with
`register` (send survey, open ticket, offer appointment) and the effects they produce with
`execution.register_effect`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from regulars.journeys.definition import Duration, Scalar, Strict, Where, parse_duration

# --- what a node sees, and what it answers ---


@dataclass(frozen=True, slots=True)
class RunView:
    """A run as node logic sees it."""

    id: str
    customer_id: str
    node_id: str
    arrived_at: datetime  # when the run reached this node
    zone: ZoneInfo  # the customer's time zone
    trigger: Mapping[str, Any] = field(default_factory=dict)  # the trigger event's properties


@dataclass(frozen=True, slots=True)
class Observed:
    """What the service looked up for the node: a branch's condition, or the awaited event
    (its properties) when it happened since the run arrived at the wait."""

    condition: bool | None = None
    awaited: Mapping[str, Any] | None = None
    awaited_at: datetime | None = None


class Effect:
    """Something a step makes happen outside the run (a message, a trait, an event)."""


@dataclass(frozen=True, slots=True)
class SendMessage(Effect):
    template: str
    channel: str | None  # None: the customer's preferred reachable channel
    category: str | None


@dataclass(frozen=True, slots=True)
class SetTraits(Effect):
    traits: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class EmitEvent(Effect):
    event: str
    properties: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CallWebhook(Effect):
    url: str
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Transition:
    """Where the run goes. `wait_until` set: it stays on this node until then (or until
    `listen` wakes it). `next_node` None (and no wait): the run ends with `exit_reason`."""

    outcome: str  # the edge taken, for statistics: next, yes, no, timeout, event, a path...
    next_node: str | None = None
    wait_until: datetime | None = None
    listen: str | None = None  # the event name that wakes a waiting run early
    effects: tuple[Effect, ...] = ()
    variant: str | None = None  # the arm this run is in from now on (split path, control)
    exit_reason: str = "completed"

    @property
    def waits(self) -> bool:
        return self.wait_until is not None


def bucket(run_id: str, node_id: str) -> int:
    """A stable number in 0..9999 for a run at a node: splits are random across runs and the
    same on every retry of one run."""
    digest = hashlib.blake2b(f"{run_id}:{node_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000


_PLACEHOLDER = re.compile(r"^\{\{\s*trigger\.([A-Za-z0-9_.-]+)\s*\}\}$")


def fill(value: Any, trigger: Mapping[str, Any]) -> Any:
    """A string that is exactly `{{ trigger.name }}` becomes the trigger property's value;
    dicts and lists are filled inside; anything else is kept."""
    if isinstance(value, str):
        match = _PLACEHOLDER.match(value)
        return lookup(trigger, match[1]) if match else value
    if isinstance(value, dict):
        return {k: fill(v, trigger) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, trigger) for v in value]
    return value


def lookup(data: Mapping[str, Any], path: str) -> Any:
    found: Any = data
    for part in path.split("."):
        if not isinstance(found, Mapping):
            return None
        found = found.get(part)
    return found


def matches(properties: Mapping[str, Any], where: Mapping[str, Scalar]) -> bool:
    """Every `where` property equals the event's (dots reach into nested properties);
    true is not 1."""
    return all(same(lookup(properties, key), value) for key, value in where.items())


def same(actual: Any, wanted: Any) -> bool:
    """Equal, with booleans apart from numbers (Python holds True == 1)."""
    return isinstance(actual, bool) == isinstance(wanted, bool) and actual == wanted


# --- the node kinds ---


class Node(Strict):
    kind: ClassVar[str]
    # What the service must look up before `step`: "condition" or "awaited".
    observes: ClassVar[str | None] = None

    def successors(self) -> dict[str, str]:
        """Edge name -> node id, for drawing and validating the graph."""
        return {}

    def always_waits(self) -> bool:
        """Every run stops here for a while: a loop through this node is no endless loop."""
        return False

    def step(self, run: RunView, observed: Observed, now: datetime) -> Transition:
        raise NotImplementedError


class Send(Node):
    """Send a template on a channel, or `auto`: the customer's preferred reachable one."""

    kind: ClassVar[str] = "send"
    type: Literal["send"]
    template: str = Field(min_length=1, max_length=100)
    channel: Literal["auto", "email", "sms", "whatsapp", "push", "inapp", "webhook"] = "auto"
    category: Literal["transactional", "marketing"] | None = None
    next: str | None = None

    def successors(self) -> dict[str, str]:
        return _edges(next=self.next)

    def step(self, run: RunView, observed: Observed, now: datetime) -> Transition:
        channel = None if self.channel == "auto" else self.channel
        effect = SendMessage(self.template, channel, self.category)
        return Transition("next", self.next, effects=(effect,))


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


_WEEKDAYS = list(Weekday)


class Delay(Node):
    """Wait `duration`; or until the customer's local clock is inside a window: `at` a time
    of day, or `between` two times, on the given weekdays."""

    kind: ClassVar[str] = "delay"
    type: Literal["delay"]
    duration: Duration | None = None
    at: time | None = None
    between: tuple[time, time] | None = None
    weekdays: list[Weekday] = Field(default_factory=lambda: list(Weekday), min_length=1)
    next: str | None = None

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _one_form(self) -> Delay:
        given = [self.duration is not None, self.at is not None, self.between is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of duration, at (HH:MM) or between [HH:MM, HH:MM]")
        if self.between is not None and self.between[0] == self.between[1]:
            raise ValueError("between needs two different times")
        return self

    def successors(self) -> dict[str, str]:
        return _edges(next=self.next)

    def always_waits(self) -> bool:
        """A duration or a time of day holds every run; a `between` window lets a run that
        arrives inside it straight through, and a zero duration holds nobody."""
        if self.duration is not None:
            return parse_duration(self.duration) > timedelta(0)
        return self.at is not None

    def step(self, run: RunView, observed: Observed, now: datetime) -> Transition:
        until = self.until(run.arrived_at, run.zone)
        if now >= until:
            return Transition("next", self.next)
        return Transition("next", self.next, wait_until=until)

    def until(self, arrived_at: datetime, zone: ZoneInfo) -> datetime:
        if self.duration is not None:
            return arrived_at + parse_duration(self.duration)
        return next_window(arrived_at, zone, self.at, self.between, set(self.weekdays))


def next_window(
    moment: datetime,
    zone: ZoneInfo,
    at: time | None,
    between: tuple[time, time] | None,
    weekdays: set[Weekday],
) -> datetime:
    """The first moment at or after `moment` when the local clock is `at` (or inside
    `between`, which may span midnight) on an allowed weekday."""
    local = moment.astimezone(zone)
    if between is not None and _inside(local, between) and _weekday(local, between) in weekdays:
        return moment
    start = at if at is not None else between[0] if between is not None else time(0)
    for days in range(0, 8):
        day = (local + timedelta(days=days)).date()
        if _WEEKDAYS[day.weekday()] not in weekdays:
            continue
        for fold in (0, 1):  # a time in the hour the clocks go back over comes twice
            candidate = datetime.combine(day, start, tzinfo=zone).replace(fold=fold)
            # Instants, not wall clocks: same-zone datetimes compare by wall clock, fold ignored.
            if candidate.astimezone(UTC) >= moment.astimezone(UTC):
                return candidate.astimezone(moment.tzinfo)
    raise ValueError("no allowed weekday")  # unreachable: weekdays is never empty


def _inside(local: datetime, between: tuple[time, time]) -> bool:
    clock_time, (start, end) = local.time(), between
    if start < end:
        return start <= clock_time < end
    return clock_time >= start or clock_time < end  # the window spans midnight


def _weekday(local: datetime, between: tuple[time, time]) -> Weekday:
    """The weekday the window opened on (after midnight in a window that spans it, the day
    before)."""
    start, end = between
    if start > end and local.time() < end:
        return _WEEKDAYS[(local - timedelta(days=1)).weekday()]
    return _WEEKDAYS[local.weekday()]


class Wait(Node):
    """Wait for `event` (matching `where`, and equal to the trigger in each `match`
    property, e.g. the same order_id) at most `timeout`; go to `next` when it comes and to
    `timeout_next` when it does not."""

    kind: ClassVar[str] = "wait"
    observes: ClassVar[str | None] = "awaited"
    type: Literal["wait"]
    event: str = Field(min_length=1, max_length=200)
    where: Where = Field(default_factory=dict)
    match: list[str] = Field(default_factory=list)
    timeout: Duration
    next: str | None = None
    timeout_next: str | None = None

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: str) -> str:
        parse_duration(value)
        return value

    def successors(self) -> dict[str, str]:
        return _edges(next=self.next, timeout_next=self.timeout_next)

    def always_waits(self) -> bool:
        return parse_duration(self.timeout) > timedelta(0)

    def step(self, run: RunView, observed: Observed, now: datetime) -> Transition:
        if observed.awaited is not None:
            return Transition("event", self.next)
        deadline = run.arrived_at + parse_duration(self.timeout)
        if now >= deadline:
            return Transition("timeout", self.timeout_next, exit_reason="timed_out")
        return Transition("event", self.next, wait_until=deadline, listen=self.event)

    def wanted(self, trigger: Mapping[str, Any]) -> dict[str, Scalar]:
        """The property values an awaited event must have: `where` plus the matched ones."""
        wanted = dict(self.where)
        for name in self.match:
            wanted[name] = lookup(trigger, name)
        return wanted


class Branch(Node):
    """Go `yes` or `no` on a condition: a segment rule (traits, facts, event history,
    consent, membership of a segment), evaluated for the customer when the run gets here."""

    kind: ClassVar[str] = "branch"
    observes: ClassVar[str | None] = "condition"
    type: Literal["branch"]
    condition: dict[str, Any]
    yes: str | None = None
    no: str | None = None

    def successors(self) -> dict[str, str]:
        return _edges(yes=self.yes, no=self.no)

    def step(self, run: RunView, observed: Observed, now: datetime) -> Transition:
        if observed.condition:
            return Transition("yes", self.yes)
        return Transition("no", self.no)


class SplitPath(Strict):
    name: str = Field(min_length=1, max_length=64)
    percent: float = Field(gt=0, le=100)
    next: str | None = None


class Split(Node):
    """Send each run down one path at random by percentages (an A/B test); the path's name
    becomes the run's variant, so goals are counted per path."""

    kind: ClassVar[str] = "split"
    type: Literal["split"]
    paths: list[SplitPath] = Field(min_length=2, max_length=10)

    @model_validator(mode="after")
    def _hundred(self) -> Split:
        if abs(sum(p.percent for p in self.paths) - 100) > 1e-6:
            raise ValueError("the paths' percents must add up to 100")
        if len({p.name for p in self.paths}) != len(self.paths):
            raise ValueError("each path needs its own name")
        return self

    def successors(self) -> dict[str, str]:
        return {f"paths.{p.name}": p.next for p in self.paths if p.next is not None}

    def step(self, run: RunView, observed: Observed, now: datetime) -> Transition:
        drawn = bucket(run.id, run.node_id)
        edge = 0.0
        for path in self.paths:
            edge += path.percent * 100
            if drawn < edge:
                return Transition(path.name, path.next, variant=path.name)
        last = self.paths[-1]
        return Transition(last.name, last.next, variant=last.name)


class Holdout(Node):
    """Keep `percent` of runs as a control group that gets nothing from here on: they end
    with variant `control` and their goals are still counted, to measure the uplift."""

    kind: ClassVar[str] = "holdout"
    type: Literal["holdout"]
    percent: float = Field(gt=0, lt=100)
    next: str | None = None

    def successors(self) -> dict[str, str]:
        return _edges(next=self.next)

    def step(self, run: RunView, observed: Observed, now: datetime) -> Transition:
        if bucket(run.id, run.node_id) < self.percent * 100:
            return Transition("control", None, variant="control", exit_reason="holdout")
        return Transition("treatment", self.next, variant="treatment")


class UpdateTraits(Node):
    """Set profile traits; a value `{{ trigger.name }}` takes the trigger's property."""

    kind: ClassVar[str] = "update_traits"
    type: Literal["update_traits"]
    traits: dict[str, Any] = Field(min_length=1)
    next: str | None = None

    def successors(self) -> dict[str, str]:
        return _edges(next=self.next)

    def step(self, run: RunView, observed: Observed, now: datetime) -> Transition:
        return Transition("next", self.next, effects=(SetTraits(fill(self.traits, run.trigger)),))


class Emit(Node):
    """Put an event on the customer's timeline (other journeys and segments see it)."""

    kind: ClassVar[str] = "emit"
    type: Literal["emit"]
    event: str = Field(min_length=1, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)
    next: str | None = None

    def successors(self) -> dict[str, str]:
        return _edges(next=self.next)

    def step(self, run: RunView, observed: Observed, now: datetime) -> Transition:
        effect = EmitEvent(self.event, fill(self.properties, run.trigger))
        return Transition("next", self.next, effects=(effect,))


class Webhook(Node):
    """POST the run (customer, journey, trigger, `body`) to a URL, signed, with retries."""

    kind: ClassVar[str] = "webhook"
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://", max_length=2000)
    body: dict[str, Any] = Field(default_factory=dict)
    next: str | None = None

    def successors(self) -> dict[str, str]:
        return _edges(next=self.next)

    def step(self, run: RunView, observed: Observed, now: datetime) -> Transition:
        effect = CallWebhook(self.url, fill(self.body, run.trigger))
        return Transition("next", self.next, effects=(effect,))


class Exit(Node):
    """End the run here."""

    kind: ClassVar[str] = "exit"
    type: Literal["exit"]

    def step(self, run: RunView, observed: Observed, now: datetime) -> Transition:
        return Transition("exit", None)


def _edges(**targets: str | None) -> dict[str, str]:
    return {edge: node for edge, node in targets.items() if node is not None}


NODE_KINDS: dict[str, type[Node]] = {}


def register(node_class: type[Node]) -> type[Node]:
    """Make a node kind usable in journeys (the extension point for later domains)."""
    NODE_KINDS[node_class.kind] = node_class
    return node_class


for _kind in (Send, Delay, Wait, Branch, Split, Holdout, UpdateTraits, Emit, Webhook, Exit):
    register(_kind)
