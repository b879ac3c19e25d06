"""Segment rules evaluated in plain Python over one customer's data in memory.

Written from the semantics (rules.py docstrings), not from the SQL: simple loops over one
customer's data, time zones through zoneinfo. Two uses:

- live re-evaluation of a few customers: loading their rows and looping is faster than
  building a SQL statement for many rules (membership.reevaluate);
- the reference the SQL compiler is tested against: hypothesis checks that both give the
  same members for random rules and timelines, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from regulars.kit.zones import zone_or_utc
from regulars.segments.rules import (
    PROFILE_TEXT_FIELDS,
    PROFILE_TIME_FIELDS,
    AbsenceCondition,
    Aggregate,
    And,
    ConsentCondition,
    Duration,
    EventCondition,
    EventFilter,
    EventTimeCondition,
    FactCondition,
    FunnelCondition,
    GroupCondition,
    Not,
    Occurrence,
    Op,
    Or,
    ProfileCondition,
    PropertyPredicate,
    ReachableCondition,
    Rule,
    SegmentCondition,
    Window,
    date_value,
    number_holds,
)

MISSING = object()  # no value at all (distinct from a JSON null, which is None)


@dataclass
class Event:
    name: str
    timestamp: datetime
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class Facts:
    orders_count: int = 0
    revenue_total_cents: int = 0
    refunds_count: int = 0
    refunded_total_cents: int = 0
    events_count: int = 0
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    rfm_recency: int | None = None
    rfm_frequency: int | None = None
    rfm_monetary: int | None = None


@dataclass(frozen=True)
class Group:
    key: str
    traits: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class Person:
    id: str
    created_at: datetime
    updated_at: datetime
    timezone: str | None = None
    external_id: str | None = None
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    locale: str | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    facts: Facts | None = None
    consents: dict[tuple[str, str], str] = field(default_factory=dict)  # (channel, topic)
    groups: list[Group] = field(default_factory=list)
    segments: set[str] = field(default_factory=set)  # keys of the segments they are in
    events: list[Event] = field(default_factory=list)
    # What is worked out from the events, kept while their number stays the same.
    _memo: tuple[int, dict[tuple[Any, ...], Any]] = field(
        default=(-1, {}), init=False, repr=False, compare=False
    )

    def _memo_of_these_events(self) -> dict[tuple[Any, ...], Any]:
        """The memo, emptied when events were added since it was filled."""
        if self._memo[0] != len(self.events):
            self._memo = (len(self.events), {})
        return self._memo[1]

    def events_named(self, name: str) -> list[Event]:
        """Events of one name (all names indexed in one pass)."""
        memo = self._memo_of_these_events()
        index: dict[str, list[Event]] | None = memo.get(("by name",))
        if index is None:
            index = memo[("by name",)] = {}
            for event in self.events:
                index.setdefault(event.name, []).append(event)
        return index.get(name, [])

    def events_until(self, name: str, now: datetime) -> list[Event]:
        """Events of one name not after now: the same list for every rule that asks."""
        memo, key = self._memo_of_these_events(), ("until", name, now)
        found: list[Event] | None = memo.get(key)
        if found is None:
            found = memo[key] = [e for e in self.events_named(name) if e.timestamp <= now]
        return found

    def count_between(self, name: str, low: datetime, now: datetime) -> int:
        """Events of one name from `low` to `now`, both included: counted once for every rule
        that asks (20 rules on orders in 5 windows count 5 times, not 20)."""
        memo, key = self._memo_of_these_events(), ("count", name, low, now)
        found: int | None = memo.get(key)
        if found is None:
            found = memo[key] = sum(1 for e in self.events_until(name, now) if e.timestamp >= low)
        return found


def members(rule: Rule, people: Iterable[Person], now: datetime) -> set[str]:
    return {person.id for person in people if holds(rule, person, now)}


def holds(rule: Rule, person: Person, now: datetime) -> bool:
    if isinstance(rule, And):
        return all(holds(child, person, now) for child in rule.rules)
    if isinstance(rule, Or):
        return any(holds(child, person, now) for child in rule.rules)
    if isinstance(rule, Not):
        return not holds(rule.rule, person, now)
    if isinstance(rule, ProfileCondition):
        return _profile(rule, person, now)
    if isinstance(rule, FactCondition):
        return _fact(rule, person, now)
    if isinstance(rule, EventCondition):
        return _event(rule, person, now)
    if isinstance(rule, EventTimeCondition):
        return _event_time(rule, person, now)
    if isinstance(rule, AbsenceCondition):
        return _absence(rule, person, now)
    if isinstance(rule, FunnelCondition):
        return _funnel(rule, person, now)
    if isinstance(rule, ConsentCondition):
        return _consent(rule, person)
    if isinstance(rule, ReachableCondition):
        address = person.email if rule.channel.value == "email" else person.phone
        return address is not None and person.consents.get((rule.channel.value, "")) != (
            "unsubscribed"
        )
    if isinstance(rule, GroupCondition):
        return any(_group_value_matches(rule, group) for group in person.groups)
    assert isinstance(rule, SegmentCondition)
    return (rule.segment in person.segments) == rule.member


# --- compiled: a rule made once into closures, for many customers ---

Check = Callable[[Person, datetime], bool]


def compiled(rule: Rule) -> Check:
    """The rule as nested functions that answer what `holds` answers: each node's type is
    dispatched once, when compiled, instead of on every call, and an event count in a rolling
    window is shared by every rule that asks for it (`Person.count_between`). Live
    re-evaluation runs each segment's compiled rule; a property test holds it to `holds`."""
    if isinstance(rule, And):
        return _all_of(tuple(compiled(child) for child in rule.rules))
    if isinstance(rule, Or):
        return _any_of(tuple(compiled(child) for child in rule.rules))
    if isinstance(rule, Not):
        inner = compiled(rule.rule)
        return lambda person, now: not inner(person, now)
    if isinstance(rule, EventCondition) and _is_rolling_count(rule):
        return _rolling_count(rule)
    if isinstance(rule, ProfileCondition) and _is_trait_comparison(rule):
        return _trait_comparison(rule)
    return lambda person, now: holds(rule, person, now)


# Plain loops: all() and any() over a generator cost a generator a call, on the hot path.
def _all_of(checks: tuple[Check, ...]) -> Check:
    def all_hold(person: Person, now: datetime) -> bool:
        for check in checks:  # noqa: SIM110
            if not check(person, now):
                return False
        return True

    return all_hold


def _any_of(checks: tuple[Check, ...]) -> Check:
    def any_holds(person: Person, now: datetime) -> bool:
        for check in checks:  # noqa: SIM110
            if check(person, now):
                return True
        return False

    return any_holds


def _is_rolling_count(rule: EventCondition) -> bool:
    """A count of one name in the last T, compared with a number (at least 2 orders in the
    last 90 days): the commonest event condition."""
    return (
        rule.aggregate is Aggregate.COUNT
        and not rule.where
        and rule.window is not None
        and rule.window.last is not None
    )


def _rolling_count(rule: EventCondition) -> Check:
    assert rule.window is not None and rule.window.last is not None
    name, span, op, value = rule.name, rule.window.last.delta(), rule.op, rule.value

    def counted(person: Person, now: datetime) -> bool:
        return number_holds(person.count_between(name, now - span, now), op, value)

    return counted


def _is_trait_comparison(rule: ProfileCondition) -> bool:
    return _is_trait(rule.field) and rule.op not in _CALENDAR_OPS


def _trait_comparison(rule: ProfileCondition) -> Check:
    path, op, value = rule.trait_path, rule.op, rule.value
    return lambda person, now: compare(lookup(person.traits, path), op, value)


# --- values ---


def zone_of(person: Person) -> tzinfo:
    """The customer's zone; UTC when none is set or it is not a zone zoneinfo knows. Cached
    by name: an unknown name would otherwise be looked for on disk on every evaluation."""
    return zone_or_utc(person.timezone)


def lookup(document: Any, path: Sequence[str]) -> Any:
    """The value at a dotted path of object keys, or MISSING."""
    current = document
    for key in path:
        if not isinstance(current, dict) or key not in current:
            return MISSING
        current = current[key]
    return current


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def same(actual: Any, expected: Any) -> bool:
    """Typed equality: a string equals a string, a number a number, a bool a bool."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    if is_number(actual) and is_number(expected):
        return bool(actual == expected)
    if isinstance(actual, str) and isinstance(expected, str):
        return actual == expected
    return False


def compare(actual: Any, op: Op, value: Any) -> bool:
    """A text or number op on one value (MISSING or None: no value)."""
    present = actual is not MISSING and actual is not None
    if op is Op.EXISTS:
        return present
    if op is Op.MISSING:
        return not present
    if op is Op.EQUALS:
        return same(actual, value)
    if op is Op.NOT_EQUALS:
        return not same(actual, value)
    if op is Op.IN:
        return any(same(actual, v) for v in value)
    if op is Op.NOT_IN:
        return not any(same(actual, v) for v in value)
    if op is Op.CONTAINS:
        return isinstance(actual, str) and value in actual
    if op is Op.STARTS_WITH:
        return isinstance(actual, str) and actual.startswith(value)
    if not is_number(actual):
        return False
    return number_holds(actual, op, value)


# --- profile and facts ---


_CALENDAR_OPS = frozenset(
    (Op.BEFORE, Op.AFTER, Op.WITHIN_LAST, Op.WITHIN_NEXT, Op.ANNIVERSARY_WITHIN)
)


def _is_trait(field: str) -> bool:
    return field not in PROFILE_TEXT_FIELDS and field not in PROFILE_TIME_FIELDS


def _profile(rule: ProfileCondition, person: Person, now: datetime) -> bool:
    if rule.field in PROFILE_TEXT_FIELDS:
        return compare(getattr(person, rule.field), rule.op, rule.value)
    if rule.field in PROFILE_TIME_FIELDS:
        return instant(getattr(person, rule.field), rule.op, rule.value, zone_of(person), now)
    actual = lookup(person.traits, rule.trait_path)
    if rule.op in _CALENDAR_OPS:
        return _calendar(actual, rule.op, rule.value, zone_of(person), now)
    return compare(actual, rule.op, rule.value)


def midnight(day: date, zone: tzinfo) -> datetime:
    """The first moment of a local day."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def instant(moment: datetime | None, op: Op, value: Any, zone: tzinfo, now: datetime) -> bool:
    """created_at, last_order_at...: dates are the customer's local days."""
    if op is Op.EXISTS:
        return moment is not None
    if op is Op.MISSING:
        return moment is None
    if op is Op.NOT_WITHIN_LAST:
        return not instant(moment, Op.WITHIN_LAST, value, zone, now)
    if moment is None:
        return False
    if op is Op.BEFORE:
        return moment < midnight(date_value(value), zone)
    if op is Op.AFTER:
        return moment >= midnight(date_value(value) + timedelta(days=1), zone)
    assert op is Op.WITHIN_LAST and isinstance(value, Duration)
    return now - value.delta() <= moment <= now


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def trait_date(actual: Any) -> date | None:
    if not isinstance(actual, str) or not _DATE.fullmatch(actual[:10]):
        return None
    try:
        return date(int(actual[:4]), int(actual[5:7]), int(actual[8:10]))
    except ValueError:
        return None


def _calendar(actual: Any, op: Op, value: Any, zone: tzinfo, now: datetime) -> bool:
    day = trait_date(actual)
    if day is None:
        return False
    today = now.astimezone(zone).date()
    if op is Op.BEFORE:
        return day < date_value(value)
    if op is Op.AFTER:
        return day > date_value(value)
    assert isinstance(value, Duration)
    if op is Op.WITHIN_LAST:
        return today - timedelta(days=value.days) <= day <= today
    if op is Op.WITHIN_NEXT:
        return today <= day <= today + timedelta(days=value.days)
    return any(falls_on(day, today + timedelta(days=offset)) for offset in range(value.days + 1))


def falls_on(day: date, target: date) -> bool:
    """Whether the yearly date of `day` is `target`; 29 February falls on the 28th in
    years without it."""
    if (day.month, day.day) == (target.month, target.day):
        return True
    leap_day = (day.month, day.day) == (2, 29)
    return leap_day and (target.month, target.day) == (2, 28) and not calendar.isleap(target.year)


def fact_value(person: Person, name: str) -> Any:
    facts = person.facts or Facts()
    if name == "revenue_total":
        return facts.revenue_total_cents / 100
    if name == "refunded_total":
        return facts.refunded_total_cents / 100
    if name == "average_order_value":
        if facts.orders_count == 0:
            return None
        return facts.revenue_total_cents / facts.orders_count / 100
    return getattr(facts, name)


def _fact(rule: FactCondition, person: Person, now: datetime) -> bool:
    actual = fact_value(person, rule.field)
    if rule.field.endswith("_at"):
        return instant(actual, rule.op, rule.value, zone_of(person), now)
    return compare(actual, rule.op, rule.value)


# --- events ---


def _predicate(properties: dict[str, Any], predicate: PropertyPredicate) -> bool:
    actual = lookup(properties, predicate.property.split("."))
    return compare(actual, predicate.op, predicate.value)


def matching(
    person: Person,
    match: EventFilter | EventCondition | EventTimeCondition | AbsenceCondition,
    now: datetime,
) -> list[Event]:
    """The customer's events named so whose properties pass every predicate, not after now."""
    if not match.where:  # most conditions: shared by every rule on the name (do not mutate)
        return person.events_until(match.name, now)
    return [
        event
        for event in person.events_until(match.name, now)
        if all(_predicate(event.properties, p) for p in match.where)
    ]


def in_window(moment: datetime, window: Window | None, zone: tzinfo, now: datetime) -> bool:
    return window_test(window, zone, now)(moment)


def window_test(window: Window | None, zone: tzinfo, now: datetime) -> Callable[[datetime], bool]:
    """Whether a moment is inside the window, with its bounds worked out once."""
    if window is None:
        return lambda moment: True
    if window.last is not None:
        low = now - window.last.delta()
        return lambda moment: low <= moment <= now
    since = midnight(window.since, zone) if window.since is not None else None
    until = midnight(window.until + timedelta(days=1), zone) if window.until else None
    return lambda moment: (since is None or moment >= since) and (until is None or moment < until)


def _event(rule: EventCondition, person: Person, now: datetime) -> bool:
    inside = window_test(rule.window, zone_of(person), now)
    events = [e for e in matching(person, rule, now) if inside(e.timestamp)]
    if rule.aggregate is Aggregate.COUNT:
        return number_holds(len(events), rule.op, rule.value)
    assert rule.property is not None
    path = rule.property.split(".")
    numbers = [v for e in events if is_number(v := lookup(e.properties, path))]
    if rule.aggregate is Aggregate.SUM:
        return number_holds(sum(numbers), rule.op, rule.value)
    if not numbers:
        return False
    return number_holds(sum(numbers) / len(numbers), rule.op, rule.value)


def _event_time(rule: EventTimeCondition, person: Person, now: datetime) -> bool:
    times = [e.timestamp for e in matching(person, rule, now)]
    if not times:
        return False
    moment = min(times) if rule.occurrence is Occurrence.FIRST else max(times)
    return instant(moment, rule.op, rule.value, zone_of(person), now)


def _absence(rule: AbsenceCondition, person: Person, now: datetime) -> bool:
    inside = window_test(rule.window, zone_of(person), now)
    started = [e.timestamp for e in matching(person, rule, now) if inside(e.timestamp)]
    if not started:
        return False
    last = max(started)
    deadline = last + rule.within.delta()
    if deadline > now:
        return False  # still waiting
    return not any(last <= e.timestamp <= deadline for e in matching(person, rule.then_not, now))


def _funnel(rule: FunnelCondition, person: Person, now: datetime) -> bool:
    """Search every choice of events: step k at or after step k-1, all within the limit."""
    zone = zone_of(person)
    steps = [matching(person, step, now) for step in rule.steps]

    def completes(k: int, previous: datetime, first: datetime) -> bool:
        if k == len(steps):
            return True
        limit = first + rule.within.delta() if rule.within is not None else None
        return any(
            e.timestamp >= previous
            and (limit is None or e.timestamp <= limit)
            and completes(k + 1, e.timestamp, first)
            for e in steps[k]
        )

    return any(
        in_window(e.timestamp, rule.window, zone, now) and completes(1, e.timestamp, e.timestamp)
        for e in steps[0]
    )


# --- consents, groups ---


def _consent(rule: ConsentCondition, person: Person) -> bool:
    channel = rule.channel.value
    status = person.consents.get((channel, rule.topic))
    wanted = rule.status.value
    if wanted == "unknown":
        return status in (None, "unknown")
    if status != wanted:
        return False
    if wanted == "subscribed" and rule.topic:
        return person.consents.get((channel, "")) != "unsubscribed"
    return True


def _group_value_matches(rule: GroupCondition, group: Group) -> bool:
    actual = group.key if rule.field == "group_key" else lookup(group.traits, rule.trait_path)
    return compare(actual, rule.op, rule.value)
