"""Random customers, timelines and rule trees: the compiled SQL agrees with the reference.

Each example empties the tables, writes a few customers (zones around the date line, DST,
unknown zones; traits of every JSON type; facts; consents; groups; segments; events close
to now and to window edges), and checks member_ids, evaluate_for (for some candidates) and
explain's root verdict against tests/segments/reference.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regulars.db import Database, session_scope
from regulars.segments import engine as reference
from regulars.segments.engine import Event, Facts, Group, Person
from regulars.segments.repository import load_people
from regulars.segments.repository.compiler import (
    Context,
    evaluate_for,
    explain,
    member_ids,
    timezones,
)
from regulars.segments.rules import Rule, event_reads, parse_rule
from tests.segments.test_compiler import load, wipe

HYPOTHESIS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
NOWS = [
    datetime(2024, 2, 28, 23, 30, tzinfo=UTC),  # leap year, around Feb 29
    datetime(2023, 2, 28, 10, 0, tzinfo=UTC),  # no Feb 29
    datetime(2024, 11, 3, 6, 30, tzinfo=UTC),  # New York's 25-hour day
    datetime(2024, 3, 10, 10, 30, tzinfo=UTC),  # Kiritimati already tomorrow
    datetime(2024, 12, 31, 11, 0, tzinfo=UTC),  # year end
]
ZONES = [
    None,
    "UTC",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "America/New_York",
    "Europe/London",
    "Asia/Kolkata",
    "Mars/Olympus",
]
SEGMENTS = ["vip", "lapsed"]
GROUPS = [
    Group("acme", {"plan": "pro", "seats": 10}),
    Group("globex", {"plan": "free", "seats": 2.5, "tag": "B"}),
]
NAMES = ["A", "B", "C"]
TEXTS = ["a", "A", "ab", "Ann", "ann", "", "1", "a@x.io", "pro"]
SCALARS = st.one_of(
    st.integers(-2, 3),
    st.sampled_from([0.5, 2.5, -1.5, 1.0]),
    st.sampled_from(TEXTS),
    st.booleans(),
)
JSON = st.one_of(SCALARS, st.none(), st.just({"k": 1}), st.just([1]))
DATES = [
    "1992-02-29",
    "1990-03-01",
    "1991-02-28",
    "1990-01-01",
    "1990-12-31",
    "2023-02-29",
    "2024-02-29T08:00:00Z",
]
SPANS = [
    {"amount": 1, "unit": "hours"},
    {"amount": 90, "unit": "minutes"},
    {"amount": 1, "unit": "days"},
    {"amount": 2, "unit": "days"},
    {"amount": 1, "unit": "weeks"},
    {"amount": 30, "unit": "days"},
]


# --- customers ---


@st.composite
def moments(draw: st.DrawFn, now: datetime) -> datetime:
    """Instants near now and near the edges of the windows the rules use."""
    hours = draw(st.integers(-24 * 35, 3))
    nudge = draw(st.sampled_from([0, 0, 30 * 60, -1, 1]))
    return now + timedelta(hours=hours, seconds=nudge)


@st.composite
def day_texts(draw: st.DrawFn, now: datetime) -> str:
    if draw(st.booleans()):
        return draw(st.sampled_from(DATES))
    return (now.date() + timedelta(days=draw(st.integers(-3, 3)))).isoformat()


@st.composite
def events(draw: st.DrawFn, now: datetime) -> Event:
    properties: dict[str, Any] = draw(
        st.dictionaries(st.sampled_from(["n", "cat"]), JSON, max_size=2)
    )
    if draw(st.booleans()):
        properties["x"] = {"y": draw(SCALARS)}
    return Event(draw(st.sampled_from(NAMES)), draw(moments(now)), properties)


@st.composite
def facts(draw: st.DrawFn, now: datetime) -> Facts | None:
    if draw(st.booleans()):
        return None
    maybe_time = st.none() | moments(now)
    maybe_score = st.none() | st.integers(1, 5)
    return Facts(
        orders_count=draw(st.integers(0, 3)),
        revenue_total_cents=draw(st.sampled_from([0, 999, 1999, 3998, 5001])),
        refunds_count=draw(st.integers(0, 1)),
        refunded_total_cents=draw(st.sampled_from([0, 999])),
        events_count=draw(st.integers(0, 4)),
        first_order_at=draw(maybe_time),
        last_order_at=draw(maybe_time),
        first_seen_at=draw(maybe_time),
        last_seen_at=draw(maybe_time),
        rfm_recency=draw(maybe_score),
        rfm_frequency=draw(maybe_score),
        rfm_monetary=draw(maybe_score),
    )


@st.composite
def people(draw: st.DrawFn, now: datetime, *, max_events: int = 6) -> list[Person]:
    found = []
    for i in range(draw(st.integers(1, 5))):
        traits: dict[str, Any] = draw(
            st.dictionaries(st.sampled_from(["plan", "score"]), JSON, max_size=2)
        )
        if draw(st.booleans()):
            traits["day"] = draw(day_texts(now) | SCALARS)
        if draw(st.booleans()):
            traits["nested"] = {"k": draw(SCALARS)}
        created = draw(moments(now))
        consents = draw(
            st.dictionaries(
                st.tuples(st.sampled_from(["email", "sms"]), st.sampled_from(["", "news"])),
                st.sampled_from(["subscribed", "unsubscribed", "unknown"]),
                max_size=3,
            )
        )
        found.append(
            Person(
                id=f"p{i}",
                created_at=created,
                updated_at=created + timedelta(hours=draw(st.integers(0, 30))),
                timezone=draw(st.sampled_from(ZONES)),
                email=draw(st.sampled_from([None, "a@x.io", "Ann@X.io"])),
                phone=draw(st.sampled_from([None, "+15550001"])),
                first_name=draw(st.sampled_from([None, "Ann", "ann", ""])),
                traits=traits,
                facts=draw(facts(now)),
                consents=consents,
                groups=draw(st.lists(st.sampled_from(GROUPS), max_size=2, unique=True)),
                segments=set(draw(st.lists(st.sampled_from(SEGMENTS), max_size=2))),
                events=draw(st.lists(events(now), max_size=max_events)),
            )
        )
    return found


# --- rules ---


def op_value(op: str, now: datetime) -> st.SearchStrategy[Any]:
    """A valid value for an op."""
    if op in ("exists", "missing"):
        return st.none()
    if op in ("in", "not_in"):
        return st.lists(SCALARS, min_size=1, max_size=3)
    if op in ("contains", "starts_with"):
        return st.sampled_from([t for t in TEXTS if t])
    if op in ("gt", "gte", "lt", "lte"):
        return st.sampled_from([-1, 0, 1, 2, 2.5, 10, 19.99])
    if op == "between":
        return st.tuples(st.integers(-1, 3), st.sampled_from([0, 1, 2.5, 3])).map(list)
    if op in ("before", "after"):
        return st.integers(-3, 3).map(lambda d: (now.date() + timedelta(days=d)).isoformat())
    if op in ("within_last", "within_next", "not_within_last", "anniversary_within"):
        return st.sampled_from(SPANS)
    return SCALARS  # equals, not_equals


TEXT_OPS = ["equals", "not_equals", "in", "not_in", "contains", "starts_with", "exists", "missing"]
NUMBER_OPS = ["equals", "not_equals", "in", "not_in", "gt", "gte", "lt", "lte", "between"]
INSTANT_OPS = ["before", "after", "within_last", "not_within_last", "exists", "missing"]
CALENDAR_OPS = ["before", "after", "within_last", "within_next", "anniversary_within"]
AGGREGATE_OPS = ["equals", "not_equals", "gt", "gte", "lt", "lte", "between"]


@st.composite
def compared(draw: st.DrawFn, now: datetime, field: str, ops: list[str]) -> dict[str, Any]:
    op = draw(st.sampled_from(ops))
    node: dict[str, Any] = {"field": field, "op": op}
    value = draw(op_value(op, now))
    if value is not None:
        node["value"] = value
    return node


@st.composite
def profiles(draw: st.DrawFn, now: datetime) -> dict[str, Any]:
    kind = draw(st.sampled_from(["text", "time", "trait", "date"]))
    if kind == "text":
        field, ops = draw(st.sampled_from(["email", "first_name", "timezone"])), TEXT_OPS
    elif kind == "time":
        field, ops = draw(st.sampled_from(["created_at", "updated_at"])), INSTANT_OPS
    elif kind == "trait":
        field = draw(st.sampled_from(["traits.plan", "traits.score", "traits.nested.k"]))
        ops = TEXT_OPS + NUMBER_OPS
    else:
        field, ops = draw(st.sampled_from(["traits.day", "traits.plan"])), CALENDAR_OPS
    return {"type": "profile", **draw(compared(now, field, ops))}


@st.composite
def fact_rules(draw: st.DrawFn, now: datetime) -> dict[str, Any]:
    numbers = ["orders_count", "revenue_total", "average_order_value", "refunded_total"]
    numbers += ["events_count", "rfm_recency", "rfm_monetary"]
    if draw(st.booleans()):
        field, ops = draw(st.sampled_from(numbers)), [*NUMBER_OPS, "exists", "missing"]
    else:
        field, ops = draw(st.sampled_from(["first_order_at", "last_order_at"])), INSTANT_OPS
    return {"type": "fact", **draw(compared(now, field, ops))}


@st.composite
def wheres(draw: st.DrawFn, now: datetime) -> list[dict[str, Any]]:
    found = []
    for _ in range(draw(st.integers(0, 2))):
        prop = draw(st.sampled_from(["n", "cat", "x.y"]))
        node = draw(compared(now, prop, TEXT_OPS + NUMBER_OPS))
        found.append({"property": node.pop("field"), **node})
    return found


@st.composite
def windows(draw: st.DrawFn, now: datetime) -> dict[str, Any] | None:
    kind = draw(st.sampled_from(["none", "last", "since", "until", "range"]))
    day = draw(st.integers(-4, 1).map(lambda d: now.date() + timedelta(days=d)))
    if kind == "none":
        return None
    if kind == "last":
        return {"last": draw(st.sampled_from(SPANS))}
    if kind == "since":
        return {"since": day.isoformat()}
    if kind == "until":
        return {"until": day.isoformat()}
    return {
        "since": day.isoformat(),
        "until": (day + timedelta(days=draw(st.integers(0, 2)))).isoformat(),
    }


def _with_window(node: dict[str, Any], window: dict[str, Any] | None) -> dict[str, Any]:
    return node if window is None else {**node, "window": window}


@st.composite
def event_rules(draw: st.DrawFn, now: datetime) -> dict[str, Any]:
    aggregate = draw(st.sampled_from(["count", "count", "sum", "avg"]))
    op = draw(st.sampled_from(AGGREGATE_OPS))
    node: dict[str, Any] = {
        "type": "event",
        "name": draw(st.sampled_from(NAMES)),
        "where": draw(wheres(now)),
        "aggregate": aggregate,
        "op": op,
        "value": draw(
            st.tuples(st.integers(0, 2), st.integers(0, 3)).map(list)
            if op == "between"
            else st.sampled_from([0, 1, 2, 0.5, 1.5, 3])
        ),
    }
    if aggregate != "count":
        node["property"] = "n"
    return _with_window(node, draw(windows(now)))


@st.composite
def event_time_rules(draw: st.DrawFn, now: datetime) -> dict[str, Any]:
    op = draw(st.sampled_from(["before", "after", "within_last", "not_within_last"]))
    return {
        "type": "event_time",
        "name": draw(st.sampled_from(NAMES)),
        "where": draw(wheres(now)),
        "occurrence": draw(st.sampled_from(["first", "last"])),
        "op": op,
        "value": draw(op_value(op, now)),
    }


@st.composite
def absence_rules(draw: st.DrawFn, now: datetime) -> dict[str, Any]:
    node = {
        "type": "absence",
        "name": draw(st.sampled_from(NAMES)),
        "where": draw(wheres(now)),
        "then_not": {"name": draw(st.sampled_from(NAMES)), "where": draw(wheres(now))},
        "within": draw(st.sampled_from(SPANS)),
    }
    return _with_window(node, draw(windows(now)))


@st.composite
def funnel_rules(draw: st.DrawFn, now: datetime) -> dict[str, Any]:
    steps = [
        {"name": draw(st.sampled_from(NAMES)), "where": draw(wheres(now))}
        for _ in range(draw(st.integers(2, 3)))
    ]
    node: dict[str, Any] = {"type": "funnel", "steps": steps}
    if draw(st.booleans()):
        node["within"] = draw(st.sampled_from(SPANS))
    return _with_window(node, draw(windows(now)))


@st.composite
def other_rules(draw: st.DrawFn, now: datetime) -> dict[str, Any]:
    kind = draw(st.sampled_from(["consent", "reachable", "group", "segment"]))
    if kind == "consent":
        return {
            "type": "consent",
            "channel": draw(st.sampled_from(["email", "sms"])),
            "topic": draw(st.sampled_from(["", "news"])),
            "status": draw(st.sampled_from(["subscribed", "unsubscribed", "unknown"])),
        }
    if kind == "reachable":
        return {"type": "reachable", "channel": draw(st.sampled_from(["email", "sms", "whatsapp"]))}
    if kind == "group":
        field = draw(st.sampled_from(["group_key", "traits.plan", "traits.seats", "traits.tag"]))
        return {"type": "group", **draw(compared(now, field, TEXT_OPS + NUMBER_OPS))}
    return {
        "type": "segment",
        "segment": draw(st.sampled_from(SEGMENTS)),
        "member": draw(st.booleans()),
    }


def trees(leaves: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    def combine(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        many = st.lists(children, min_size=1, max_size=3)
        return st.one_of(
            many.map(lambda rules: {"type": "and", "rules": rules}),
            many.map(lambda rules: {"type": "or", "rules": rules}),
            children.map(lambda rule: {"type": "not", "rule": rule}),
        )

    return st.recursive(leaves, combine, max_leaves=5)


def any_leaf(now: datetime) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        profiles(now),
        fact_rules(now),
        event_rules(now),
        event_time_rules(now),
        absence_rules(now),
        funnel_rules(now),
        other_rules(now),
    )


def event_leaf(now: datetime) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(event_rules(now), event_time_rules(now), absence_rules(now), funnel_rules(now))


# --- the check ---


def check(now: datetime, crowd: list[Person], rules: list[Rule], candidates: list[str]) -> None:
    wipe()
    segment_ids = load(crowd, segments=SEGMENTS)
    with session_scope(readonly=True) as session:
        ctx = Context(now, timezones(session), segment_ids)
        live = Context(now, timezones(session, candidates), segment_ids, candidates)
        for rule in rules:
            expected = reference.members(rule, crowd, now)
            assert set(member_ids(session, rule, ctx)) == expected, rule
            for person in crowd:
                verdict = explain(session, rule, person.id, ctx)[0]
                assert verdict.holds == (person.id in expected), (person.id, rule)
        answers = evaluate_for(session, {str(i): rule for i, rule in enumerate(rules)}, live)
        # What live re-evaluation reads back from the database is the same customer, as far
        # as the rule can tell: only the history it reads, properties only where it reads them.
        loaded = [
            load_people(
                session, candidates, event_reads=event_reads(rule), now=now, segment_ids=segment_ids
            )
            for rule in rules
        ]
    for i, rule in enumerate(rules):
        expected = reference.members(rule, crowd, now) & set(candidates)
        assert answers[str(i)] == expected, (i, rule)
        assert reference.members(rule, loaded[i], now) == expected, (i, rule)


@st.composite
def scenarios(
    draw: st.DrawFn, leaf: Any, max_events: int
) -> tuple[datetime, list[Person], list[Rule], list[str]]:
    now = draw(st.sampled_from(NOWS))
    crowd = draw(people(now, max_events=max_events))
    rules = [parse_rule(raw) for raw in draw(st.lists(trees(leaf(now)), min_size=1, max_size=3))]
    ids = [p.id for p in crowd]
    candidates = draw(st.lists(st.sampled_from([*ids, "nobody"]), max_size=4, unique=True))
    return now, crowd, rules, candidates


@HYPOTHESIS
@given(scenario=scenarios(any_leaf, 6))
def test_random_rules_agree_with_the_reference(
    database: Database, scenario: tuple[datetime, list[Person], list[Rule], list[str]]
) -> None:
    check(*scenario)


@HYPOTHESIS
@given(scenario=scenarios(event_leaf, 12))
def test_random_event_rules_on_busier_timelines_agree_with_the_reference(
    database: Database, scenario: tuple[datetime, list[Person], list[Rule], list[str]]
) -> None:
    check(*scenario)


def test_day_texts_cover_the_calendar_edges() -> None:
    """The date pool holds a leap day, a day that does not exist and a timestamp."""
    assert reference.trait_date("1992-02-29") == date(1992, 2, 29)
    assert reference.trait_date("2023-02-29") is None
    assert reference.trait_date("2024-02-29T08:00:00Z") == date(2024, 2, 29)
