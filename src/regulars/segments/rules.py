"""The segment rule tree: its canonical JSON form, validation, and what a rule depends on.

A rule is a tree of nodes, each a JSON object with a "type":

- `and` / `or` with "rules", `not` with "rule": combine at any depth;
- `profile`: a built-in field or a trait (`traits.a.b`) compared with "op" and "value";
- `fact`: a per-customer aggregate (orders_count, revenue_total, last_order_at, rfm_*...);
- `event`: count, sum or average of a property of events named "name" (optionally filtered
  by "where" property predicates) within a "window", compared with "op" and "value";
- `event_time`: the first or last occurrence of an event before / after a date or within
  the last duration;
- `absence`: the last "name" event (in the window) was not followed by "then_not" within
  "within" (the wait is over: an abandoned checkout);
- `funnel`: "steps" performed in order, all within "within" of the first;
- `consent`, `reachable`, `group`, `segment`.

This module is pure: no database. The SQL compiler (repository/compiler.py) and the
reference evaluator in the tests both read these models.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from regulars.customers.models import Channel, ConsentStatus

MAX_DEPTH = 12
MAX_NODES = 200
MAX_FUNNEL_STEPS = 5

PROFILE_TEXT_FIELDS = (
    "external_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "locale",
    "timezone",
)
PROFILE_TIME_FIELDS = ("created_at", "updated_at")
FACT_NUMBER_FIELDS = (
    "orders_count",
    "revenue_total",
    "average_order_value",
    "refunds_count",
    "refunded_total",
    "events_count",
    "rfm_recency",
    "rfm_frequency",
    "rfm_monetary",
)
FACT_TIME_FIELDS = ("first_order_at", "last_order_at", "first_seen_at", "last_seen_at")
TRAIT_PREFIX = "traits."
_TRAIT_KEY = re.compile(r"^[A-Za-z0-9_\- ]{1,64}$")


class Op(StrEnum):
    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    IN = "in"
    NOT_IN = "not_in"
    CONTAINS = "contains"
    STARTS_WITH = "starts_with"
    EXISTS = "exists"
    MISSING = "missing"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    BETWEEN = "between"
    BEFORE = "before"
    AFTER = "after"
    WITHIN_LAST = "within_last"
    WITHIN_NEXT = "within_next"
    NOT_WITHIN_LAST = "not_within_last"
    ANNIVERSARY_WITHIN = "anniversary_within"


# What each comparison op means, for Python values (the reference engine) and for SQL
# columns (the compiler), where the same operators build the expression.
COMPARISONS: dict[Op, Callable[[Any, Any], Any]] = {
    Op.EQUALS: operator.eq,
    Op.NOT_EQUALS: operator.ne,
    Op.GT: operator.gt,
    Op.GTE: operator.ge,
    Op.LT: operator.lt,
    Op.LTE: operator.le,
}


def number_holds(number: float, op: Op, target: Any) -> bool:
    """A number against a comparison op or BETWEEN [low, high], in Python."""
    if op is Op.BETWEEN:
        low, high = target
        return bool(low <= number <= high)
    return bool(COMPARISONS[op](number, target))


TEXT_OPS = {
    Op.EQUALS,
    Op.NOT_EQUALS,
    Op.IN,
    Op.NOT_IN,
    Op.CONTAINS,
    Op.STARTS_WITH,
    Op.EXISTS,
    Op.MISSING,
}
NUMBER_OPS = {
    Op.EQUALS,
    Op.NOT_EQUALS,
    Op.IN,
    Op.NOT_IN,
    Op.GT,
    Op.GTE,
    Op.LT,
    Op.LTE,
    Op.BETWEEN,
    Op.EXISTS,
    Op.MISSING,
}
# Instants (built-in timestamps, facts): dates are local midnights in the customer's zone,
# durations are rolling windows ending now.
INSTANT_OPS = {Op.BEFORE, Op.AFTER, Op.WITHIN_LAST, Op.NOT_WITHIN_LAST, Op.EXISTS, Op.MISSING}
# Trait dates ("YYYY-MM-DD..." strings): compared as calendar dates in the customer's zone.
CALENDAR_OPS = {Op.BEFORE, Op.AFTER, Op.WITHIN_LAST, Op.WITHIN_NEXT, Op.ANNIVERSARY_WITHIN}
# Calendar ops relative to the customer's today: they change as days pass.
MOVING_CALENDAR_OPS = {Op.WITHIN_LAST, Op.WITHIN_NEXT, Op.ANNIVERSARY_WITHIN}
AGGREGATE_OPS = {Op.EQUALS, Op.NOT_EQUALS, Op.GT, Op.GTE, Op.LT, Op.LTE, Op.BETWEEN}

Scalar = str | int | float | bool


class Unit(StrEnum):
    MINUTES = "minutes"
    HOURS = "hours"
    DAYS = "days"
    WEEKS = "weeks"


@lru_cache(maxsize=1024)
def _delta(unit: Unit, amount: int) -> timedelta:
    return timedelta(**{unit.value: amount})


class Duration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: int = Field(ge=1, le=100_000)
    unit: Unit

    def delta(self) -> timedelta:
        return _delta(self.unit, self.amount)

    @property
    def days(self) -> int:
        """Whole days, for calendar comparisons (minutes and hours round down)."""
        return self.delta().days


class Window(BaseModel):
    """Either the last duration (rolling, ending now) or a range of local dates, inclusive."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    last: Duration | None = None
    since: date | None = None
    until: date | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Window:
        if self.last is not None and (self.since or self.until):
            raise ValueError("give either last or since/until, not both")
        if self.last is None and self.since is None and self.until is None:
            raise ValueError("give last, or since and/or until (omit window for ever)")
        if self.since and self.until and self.since > self.until:
            raise ValueError("since is after until")
        return self


class PropertyPredicate(BaseModel):
    """A condition on one event property, e.g. {"property": "category", "op": "equals",
    "value": "shoes"}; nested properties with dots."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    property: str = Field(min_length=1, max_length=255)
    op: Op
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _check(self) -> PropertyPredicate:
        _check_path(self.property.split("."), "property")
        _check_value(self.op, self.value, TEXT_OPS | NUMBER_OPS)
        return self


class EventFilter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=255)
    where: tuple[PropertyPredicate, ...] = ()


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class And(_Node):
    type: Literal["and"]
    rules: list[Rule] = Field(min_length=1, max_length=50)


class Or(_Node):
    type: Literal["or"]
    rules: list[Rule] = Field(min_length=1, max_length=50)


class Not(_Node):
    type: Literal["not"]
    rule: Rule


class ProfileCondition(_Node):
    """A built-in profile field or a trait: {"field": "traits.address.city", ...}."""

    type: Literal["profile"]
    field: str = Field(min_length=1, max_length=255)
    op: Op
    value: Scalar | list[Scalar] | Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> ProfileCondition:
        if self.field in PROFILE_TEXT_FIELDS:
            _check_value(self.op, self.value, TEXT_OPS)
        elif self.field in PROFILE_TIME_FIELDS:
            _check_value(self.op, self.value, INSTANT_OPS)
        elif self.field.startswith(TRAIT_PREFIX):
            _check_path(self.trait_path, "field")
            _check_value(self.op, self.value, TEXT_OPS | NUMBER_OPS | CALENDAR_OPS)
        else:
            known = ", ".join((*PROFILE_TEXT_FIELDS, *PROFILE_TIME_FIELDS))
            raise ValueError(f"unknown field {self.field!r}: use traits.<name> or one of {known}")
        return self

    @property
    def trait_path(self) -> tuple[str, ...]:
        return tuple(self.field.removeprefix(TRAIT_PREFIX).split("."))


class FactCondition(_Node):
    type: Literal["fact"]
    field: str
    op: Op
    value: Scalar | list[Scalar] | Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> FactCondition:
        if self.field in FACT_NUMBER_FIELDS:
            _check_value(self.op, self.value, NUMBER_OPS)
        elif self.field in FACT_TIME_FIELDS:
            _check_value(self.op, self.value, INSTANT_OPS)
        else:
            known = ", ".join((*FACT_NUMBER_FIELDS, *FACT_TIME_FIELDS))
            raise ValueError(f"unknown fact {self.field!r}: use one of {known}")
        return self


class Aggregate(StrEnum):
    COUNT = "count"
    SUM = "sum"
    AVG = "avg"


class EventCondition(_Node):
    """count / sum / avg of matching events in the window, compared with a number.
    The default (count >= 1, ever) reads "performed NAME". Sums over no events are 0; an
    average over no events is no value, so every comparison with it is false."""

    type: Literal["event"]
    name: str = Field(min_length=1, max_length=255)
    where: tuple[PropertyPredicate, ...] = ()
    aggregate: Aggregate = Aggregate.COUNT
    property: str | None = None
    op: Op = Op.GTE
    value: int | float | list[int | float] = 1
    window: Window | None = None

    @model_validator(mode="after")
    def _check(self) -> EventCondition:
        if (self.aggregate is Aggregate.COUNT) != (self.property is None):
            raise ValueError("sum and avg need a property; count takes none")
        if self.property is not None:
            _check_path(self.property.split("."), "property")
        _check_value(self.op, self.value, AGGREGATE_OPS)
        return self


class Occurrence(StrEnum):
    FIRST = "first"
    LAST = "last"


class EventTimeCondition(_Node):
    """When the first or last matching event happened; never performed is false."""

    type: Literal["event_time"]
    name: str = Field(min_length=1, max_length=255)
    where: tuple[PropertyPredicate, ...] = ()
    occurrence: Occurrence
    op: Literal[Op.BEFORE, Op.AFTER, Op.WITHIN_LAST, Op.NOT_WITHIN_LAST]
    value: date | Duration

    @model_validator(mode="after")
    def _check(self) -> EventTimeCondition:
        _check_value(self.op, self.value, INSTANT_OPS)
        return self


class AbsenceCondition(_Node):
    """The customer's last "name" event in the window was not followed by a "then_not" event
    within "within", and that time is up. Abandoned checkout: Checkout Started, no Order
    Completed within 1 hour."""

    type: Literal["absence"]
    name: str = Field(min_length=1, max_length=255)
    where: tuple[PropertyPredicate, ...] = ()
    then_not: EventFilter
    within: Duration
    window: Window | None = None


class FunnelCondition(_Node):
    """Each step performed at or after the one before it, all within "within" of the first
    step (when given), the first step inside the window (when given)."""

    type: Literal["funnel"]
    steps: tuple[EventFilter, ...] = Field(min_length=2, max_length=MAX_FUNNEL_STEPS)
    within: Duration | None = None
    window: Window | None = None


class ConsentCondition(_Node):
    """The consent status for a channel ("" topic: the channel as a whole). A topic counts
    as subscribed only when the channel as a whole is not unsubscribed."""

    type: Literal["consent"]
    channel: Channel
    topic: str = Field(default="", max_length=100)
    status: ConsentStatus = ConsentStatus.SUBSCRIBED


class Reachability(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"


class ReachableCondition(_Node):
    """Has the address the channel needs and has not unsubscribed from the channel."""

    type: Literal["reachable"]
    channel: Reachability


class GroupCondition(_Node):
    """Member of at least one group (account) whose key or trait matches."""

    type: Literal["group"]
    field: str = Field(min_length=1, max_length=255)
    op: Op
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _check(self) -> GroupCondition:
        if self.field != "group_key":
            if not self.field.startswith(TRAIT_PREFIX):
                raise ValueError("group field is group_key or traits.<name>")
            _check_path(self.trait_path, "field")
        _check_value(self.op, self.value, TEXT_OPS | NUMBER_OPS)
        return self

    @property
    def trait_path(self) -> tuple[str, ...]:
        return tuple(self.field.removeprefix(TRAIT_PREFIX).split("."))


class SegmentCondition(_Node):
    """Member (or not) of another segment, by its key."""

    type: Literal["segment"]
    segment: str = Field(min_length=1, max_length=100)
    member: bool = True


Rule = Annotated[
    And
    | Or
    | Not
    | ProfileCondition
    | FactCondition
    | EventCondition
    | EventTimeCondition
    | AbsenceCondition
    | FunnelCondition
    | ConsentCondition
    | ReachableCondition
    | GroupCondition
    | SegmentCondition,
    Field(discriminator="type"),
]

for _model in (And, Or, Not):
    _model.model_rebuild()

_RULE = TypeAdapter(Rule)


class RuleInvalid(ValueError):
    """A rule that does not validate; `errors` name the path of each bad node."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(f"{first['path'] or 'rule'}: {first['message']}")


def parse_rule(raw: object) -> Rule:
    """The rule from its JSON form, or RuleInvalid with the path of every bad node."""
    try:
        rule = _RULE.validate_python(raw)
    except ValidationError as exc:
        raise RuleInvalid(
            [
                {"path": _path(error["loc"]), "message": error["msg"].removeprefix("Value error, ")}
                for error in exc.errors(include_url=False)
            ]
        ) from None
    size = _measure(rule)
    if size.depth > MAX_DEPTH:
        raise RuleInvalid([{"path": "", "message": f"rule is nested over {MAX_DEPTH} deep"}])
    if size.nodes > MAX_NODES:
        raise RuleInvalid([{"path": "", "message": f"rule has over {MAX_NODES} nodes"}])
    return rule


def dump_rule(rule: Rule) -> dict[str, Any]:
    """The canonical JSON form: defaults left out, so equal rules are equal documents."""
    dumped: dict[str, Any] = _RULE.dump_python(rule, mode="json", exclude_defaults=True)
    return dumped


def _path(loc: tuple[int | str, ...]) -> str:
    """Pydantic's location without the union tags it inserts: rules.0.where.1.value."""
    parts = [str(part) for part in loc if not _is_union_tag(part)]
    return ".".join(parts)


_NODE_TAGS = {
    "and",
    "or",
    "not",
    "profile",
    "fact",
    "event",
    "event_time",
    "absence",
    "funnel",
    "consent",
    "reachable",
    "group",
    "segment",
}


_VALUE_TAGS = {"str", "int", "float", "bool", "date", "none", "Duration"}


def _is_union_tag(part: int | str) -> bool:
    text = str(part)
    return text in _NODE_TAGS or text in _VALUE_TAGS or "[" in text or text.startswith("function-")


def _check_path(parts: tuple[str, ...] | list[str], what: str) -> None:
    if not parts or not all(_TRAIT_KEY.match(part) for part in parts):
        raise ValueError(f"{what}: each name between dots is 1-64 letters, digits, _ - or space")


def _check_value(op: Op, value: object, allowed: set[Op]) -> None:
    """The op is allowed here and the value has the shape the op needs."""
    if op not in allowed:
        names = ", ".join(sorted(o.value for o in allowed))
        raise ValueError(f"op {op.value!r} is not allowed here; use one of {names}")
    if op in (Op.EXISTS, Op.MISSING):
        if value is not None:
            raise ValueError(f"{op.value} takes no value")
    elif op in (Op.IN, Op.NOT_IN):
        if not isinstance(value, list) or not value or len(value) > 1000:
            raise ValueError(f"{op.value} needs a list of 1 to 1000 values")
    elif op is Op.BETWEEN:
        if not (isinstance(value, list) and len(value) == 2 and all(map(_is_number, value))):
            raise ValueError("between needs [low, high], two numbers")
    elif op in (Op.GT, Op.GTE, Op.LT, Op.LTE):
        if not _is_number(value):
            raise ValueError(f"{op.value} needs a number")
    elif op in (Op.CONTAINS, Op.STARTS_WITH):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{op.value} needs a non-empty text")
    elif op in (Op.BEFORE, Op.AFTER):
        _as_date(value, op)
    elif op in (Op.WITHIN_LAST, Op.WITHIN_NEXT, Op.NOT_WITHIN_LAST, Op.ANNIVERSARY_WITHIN):
        if not isinstance(value, Duration):
            raise ValueError(f'{op.value} needs a duration: {{"amount": 7, "unit": "days"}}')
    elif value is None or isinstance(value, (list, Duration)):
        raise ValueError(f"{op.value} needs one text, number or true/false")


def _as_date(value: object, op: Op) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{op.value} needs a date as YYYY-MM-DD")


def date_value(value: object) -> date:
    """The date a before/after condition holds (validated at parse time)."""
    return _as_date(value, Op.BEFORE)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def event_filter(node: EventCondition | EventTimeCondition | AbsenceCondition) -> EventFilter:
    """The event a single-event condition looks at."""
    return EventFilter(name=node.name, where=node.where)


# --- shape and dependencies ---


@dataclass
class _Size:
    depth: int = 0
    nodes: int = 0


def _measure(rule: Rule, depth: int = 1, size: _Size | None = None) -> _Size:
    size = size or _Size()
    size.nodes += 1
    size.depth = max(size.depth, depth)
    for child in children(rule):
        _measure(child, depth + 1, size)
    return size


def children(rule: Rule) -> tuple[Rule, ...]:
    if isinstance(rule, (And, Or)):
        return tuple(rule.rules)
    if isinstance(rule, Not):
        return (rule.rule,)
    return ()


def walk(rule: Rule) -> list[Rule]:
    """Every node, depth first, parents before children: node i of explain is walk()[i]."""
    nodes = [rule]
    for child in children(rule):
        nodes.extend(walk(child))
    return nodes


class TimeDependence(StrEnum):
    """How a rule changes with the passage of time alone (no new data)."""

    NONE = "none"  # only data changes flip it
    WINDOW = "window"  # events, facts or timestamps crossing a rolling window edge
    CALENDAR = "calendar"  # trait dates relative to today: re-checked by a full compute


@dataclass(frozen=True)
class Dependencies:
    """What a rule reads: the live re-evaluation index (which changes wake which segment)."""

    event_names: frozenset[str] = frozenset()
    profile: bool = False
    # Reads a fact that ingested events move: any but the RFM scores, which only the RFM
    # refresh moves (and it recomputes the segments that read them).
    facts: bool = False
    consents: bool = False
    groups: bool = False
    segments: frozenset[str] = frozenset()
    time: TimeDependence = TimeDependence.NONE
    rolling: tuple[RollingEdge, ...] = field(default=())


@dataclass(frozen=True)
class RollingEdge:
    """A rolling window on events or a timestamp: membership can flip when a stored time
    plus `span` passes now. The sweep finds the customers whose edge passed since the last
    sweep (kind "event" with its event name, or a fact/profile time field)."""

    kind: Literal["event", "fact", "profile"]
    target: str
    span: timedelta


RFM_FACTS = ("rfm_recency", "rfm_frequency", "rfm_monetary")


def reads_rfm(rule: Rule) -> bool:
    """Does the rule read RFM scores (refreshed on a schedule, not on each event)?"""
    return any(isinstance(n, FactCondition) and n.field in RFM_FACTS for n in walk(rule))


def dependencies(rule: Rule) -> Dependencies:
    names: set[str] = set()
    segments: set[str] = set()
    flags = {"profile": False, "facts": False, "consents": False, "groups": False}
    edges: list[RollingEdge] = []
    calendar = False
    for node in walk(rule):
        calendar |= _collect(node, names, segments, flags, edges)
    time = TimeDependence.NONE
    if edges:
        time = TimeDependence.WINDOW
    if calendar:
        time = TimeDependence.CALENDAR
    return Dependencies(
        event_names=frozenset(names),
        segments=frozenset(segments),
        time=time,
        rolling=tuple(edges),
        **flags,
    )


def _collect(
    node: Rule,
    names: set[str],
    segments: set[str],
    flags: dict[str, bool],
    edges: list[RollingEdge],
) -> bool:
    """Record what one node reads; True when it needs a calendar re-check."""
    if isinstance(node, ProfileCondition):
        flags["profile"] = True
        return _time_edge(node.op, node.value, "profile", node.field, edges)
    if isinstance(node, FactCondition):
        flags["facts"] |= node.field not in RFM_FACTS
        return _time_edge(node.op, node.value, "fact", node.field, edges)
    if isinstance(node, (EventCondition, EventTimeCondition, AbsenceCondition)):
        names.add(node.name)
        if isinstance(node, AbsenceCondition):  # the event that ends the wait is read too
            names.add(node.then_not.name)
        return _event_edges(node, edges)
    if isinstance(node, FunnelCondition):
        names.update(step.name for step in node.steps)
        return _event_edges(node, edges)
    if isinstance(node, (ConsentCondition, ReachableCondition)):
        flags["consents"] = True
        flags["profile"] |= isinstance(node, ReachableCondition)
    elif isinstance(node, GroupCondition):
        flags["groups"] = True
    elif isinstance(node, SegmentCondition):
        segments.add(node.segment)
    return False


def _time_edge(
    op: Op, value: object, kind: Literal["fact", "profile"], target: str, edges: list[RollingEdge]
) -> bool:
    if target.startswith(TRAIT_PREFIX):
        return op in MOVING_CALENDAR_OPS  # today moves; a fixed date does not
    if op in (Op.WITHIN_LAST, Op.NOT_WITHIN_LAST) and isinstance(value, Duration):
        edges.append(RollingEdge(kind, target, value.delta()))
    return False  # before / after a fixed date never change with time alone


def _event_edges(
    node: EventCondition | EventTimeCondition | AbsenceCondition | FunnelCondition,
    edges: list[RollingEdge],
) -> bool:
    """Rolling windows give edges; windows of fixed dates never change with time alone."""
    window = getattr(node, "window", None)
    first_name = node.steps[0].name if isinstance(node, FunnelCondition) else node.name
    if isinstance(window, Window) and window.last is not None:
        edges.append(RollingEdge("event", first_name, window.last.delta()))
    if isinstance(node, EventTimeCondition) and isinstance(node.value, Duration):
        edges.append(RollingEdge("event", node.name, node.value.delta()))
    if isinstance(node, AbsenceCondition):
        edges.append(RollingEdge("event", node.name, node.within.delta()))
    return False


# --- how much event history a rule reads ---


@dataclass(frozen=True)
class EventRead:
    """How much of one event name's history a rule reads: the events since `lookback`
    before now (None: all of them), and their properties or only their times."""

    lookback: timedelta | None
    properties: bool

    def joined(self, other: EventRead) -> EventRead:
        """What two readers of the same name read together."""
        lookback = None
        if self.lookback is not None and other.lookback is not None:
            lookback = max(self.lookback, other.lookback)
        return EventRead(lookback, self.properties or other.properties)


def event_reads(rule: Rule) -> dict[str, EventRead]:
    """Per event name, the history the rule can read. Live re-evaluation loads only that:
    "no product view in the last 30 days" needs a month of product views, not years.

    A rolling window bounds its condition's events (and an absence's or funnel's later
    events, which come after the window's first one). First or last occurrence, windows of
    fixed dates and no window read all of a name's history."""
    reads: dict[str, EventRead] = {}
    for node in walk(rule):
        for name, read in _node_reads(node):
            reads[name] = read if name not in reads else reads[name].joined(read)
    return reads


def _node_reads(node: Rule) -> list[tuple[str, EventRead]]:
    if isinstance(node, EventCondition):
        lookback = _window_lookback(node.window)
        properties = bool(node.where) or node.aggregate is not Aggregate.COUNT
        return [(node.name, EventRead(lookback, properties))]
    if isinstance(node, EventTimeCondition):
        return [(node.name, EventRead(None, bool(node.where)))]
    if isinstance(node, AbsenceCondition):
        lookback = _window_lookback(node.window)
        return [
            (node.name, EventRead(lookback, bool(node.where))),
            (node.then_not.name, EventRead(lookback, bool(node.then_not.where))),
        ]
    if isinstance(node, FunnelCondition):
        lookback = _window_lookback(node.window)
        return [(step.name, EventRead(lookback, bool(step.where))) for step in node.steps]
    return []


def _window_lookback(window: Window | None) -> timedelta | None:
    return window.last.delta() if window is not None and window.last is not None else None
