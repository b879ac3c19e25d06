"""The rule compiler on both databases, node type by node type, against hand-worked answers.

Every question is asked four ways that must agree: member_ids over all customers,
evaluate_for with every customer as a candidate, explain's root verdict per customer, and
the reference evaluator (tests/segments/reference.py); the test then checks the answer
worked out by hand in its comments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, insert

from regulars.customers.models import (
    Consent,
    Customer,
    CustomerFacts,
    Event,
    Group,
    GroupMembership,
)
from regulars.db import Database, session_scope
from regulars.models import Base
from regulars.segments import engine as reference
from regulars.segments.engine import Event as Ev
from regulars.segments.engine import Facts, Person
from regulars.segments.engine import Group as Grp
from regulars.segments.models import Segment, SegmentMember
from regulars.segments.repository import load_people
from regulars.segments.repository.compiler import (
    Context,
    count_and_sample,
    edge_crossers,
    evaluate_for,
    explain,
    member_ids,
    timezones,
)
from regulars.segments.rules import EventRead, RollingEdge, parse_rule

NOW = datetime(2024, 3, 10, 10, 30, tzinfo=UTC)
KIRITIMATI = "Pacific/Kiritimati"  # UTC+14: at NOW it is already 2024-03-11 00:30 there
PAGO_PAGO = "Pacific/Pago_Pago"  # UTC-11: at NOW it is still 2024-03-09 23:30 there
NEW_YORK = "America/New_York"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def days(n: int) -> dict[str, Any]:
    return {"amount": n, "unit": "days"}


TODAY_ONLY = {"amount": 23, "unit": "hours"}  # whole days: 0


# --- writing people to the database ---


def wipe() -> None:
    with session_scope() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))


def load(people: Sequence[Person], *, segments: Sequence[str] = ()) -> dict[str, str]:
    """Write the people, their groups and the given segments; answer segment key -> id."""
    segment_ids = {key: f"seg_{key}"[:26] for key in segments}
    groups = {group.key: group for person in people for group in person.groups}
    group_ids = {key: f"grp_{i}" for i, key in enumerate(sorted(groups))}
    rows: list[tuple[Any, list[dict[str, Any]]]] = [
        (Segment, [_segment(key, id_) for key, id_ in segment_ids.items()]),
        (Customer, [_customer(p) for p in people]),
        (CustomerFacts, [_facts(p) for p in people if p.facts is not None]),
        (Event, [_event(p, i, e) for p in people for i, e in enumerate(p.events)]),
        (Consent, [_consent(p, ch, tp, s) for p in people for (ch, tp), s in p.consents.items()]),
        (Group, [_group(group_ids[k], g) for k, g in groups.items()]),
        (
            GroupMembership,
            [_membership(group_ids[g.key], p) for p in people for g in p.groups],
        ),
        (
            SegmentMember,
            [_member(segment_ids[k], p) for p in people for k in p.segments if k in segment_ids],
        ),
    ]
    with session_scope() as session:
        for model, values in rows:
            if values:
                session.execute(insert(model), values)
    return segment_ids


def _customer(person: Person) -> dict[str, Any]:
    fields = ("external_id", "email", "phone", "first_name", "last_name", "locale", "timezone")
    return {
        "id": person.id,
        **{name: getattr(person, name) for name in fields},
        "traits": person.traits,
        "traits_updated_at": None,
        "created_at": person.created_at,
        "updated_at": person.updated_at,
    }


def _facts(person: Person) -> dict[str, Any]:
    assert person.facts is not None
    return {"customer_id": person.id, **vars(person.facts)}


def _event(person: Person, i: int, event: Ev) -> dict[str, Any]:
    return {
        "customer_id": person.id,
        "source": "test",
        "message_id": f"{person.id}-{i}",
        "type": "track",
        "name": event.name,
        "properties": event.properties,
        "context": {},
        "timestamp": event.timestamp,
        "received_at": event.timestamp,
        "sent_at": None,
    }


def _consent(person: Person, channel: str, topic: str, status: str) -> dict[str, Any]:
    return {
        "customer_id": person.id,
        "channel": channel,
        "topic": topic,
        "status": status,
        "source": "test",
        "updated_at": NOW,
    }


def _group(group_id: str, group: Grp) -> dict[str, Any]:
    return {
        "id": group_id,
        "group_key": group.key,
        "traits": group.traits,
        "created_at": NOW,
        "updated_at": NOW,
    }


def _membership(group_id: str, person: Person) -> dict[str, Any]:
    return {"group_id": group_id, "customer_id": person.id, "joined_at": NOW}


def _segment(key: str, segment_id: str) -> dict[str, Any]:
    return {
        "id": segment_id,
        "key": key,
        "name": key,
        "rule": {},
        "created_at": NOW,
        "updated_at": NOW,
    }


def _member(segment_id: str, person: Person) -> dict[str, Any]:
    return {"segment_id": segment_id, "customer_id": person.id, "entered_at": NOW}


class Store:
    """People in the database; `members` asks a rule four ways and insists they agree."""

    def __init__(
        self, people: Sequence[Person], *, now: datetime = NOW, segments: Sequence[str] = ()
    ) -> None:
        self.people = list(people)
        self.now = now
        self.segment_ids = load(self.people, segments=segments)

    def context(self, candidates: Sequence[str] | None = None) -> Context:
        with session_scope(readonly=True) as session:
            zones = timezones(session, candidates)
        return Context(self.now, zones, self.segment_ids, candidates)

    def members(self, raw: dict[str, Any]) -> set[str]:
        rule = parse_rule(raw)
        ids = [p.id for p in self.people]
        with session_scope(readonly=True) as session:
            every = set(member_ids(session, rule, self.context()))
            live = evaluate_for(session, {"r": rule}, self.context(ids))["r"]
            ctx = self.context(ids)
            explained = {i for i in ids if explain(session, rule, i, ctx)[0].holds}
        expected = reference.members(rule, self.people, self.now)
        assert every == live == explained, (every, live, explained)
        assert every == expected, f"compiler {sorted(every)} != reference {sorted(expected)}"
        return every


def person(id_: str, **values: Any) -> Person:
    values.setdefault("created_at", at("2020-01-01T00:00:00"))
    values.setdefault("updated_at", values["created_at"])
    return Person(id=id_, **values)


# --- profile: text fields and traits ---


def test_text_fields_compare_case_sensitively_and_by_type(database: Database) -> None:
    store = Store(
        [
            person("a", email="Ann@Example.com", first_name="Ann"),
            person("b", email="ann@example.com"),
            person("c", first_name=""),
        ]
    )

    def ask(field: str, op: str, value: Any = None) -> set[str]:
        rule: dict[str, Any] = {"type": "profile", "field": field, "op": op}
        return store.members(rule if value is None else {**rule, "value": value})

    assert ask("email", "equals", "ann@example.com") == {"b"}
    assert ask("email", "not_equals", "ann@example.com") == {"a", "c"}  # no email: not equal
    assert ask("email", "contains", "Example") == {"a"}
    assert ask("email", "starts_with", "ann") == {"b"}
    assert ask("email", "in", ["ann@example.com", 5]) == {"b"}
    assert ask("email", "not_in", ["ann@example.com"]) == {"a", "c"}
    assert ask("first_name", "exists") == {"a", "c"}  # "" is a value
    assert ask("first_name", "missing") == {"b"}
    assert ask("first_name", "equals", 5) == set()  # a number never equals a text


def test_trait_comparisons_are_typed(database: Database) -> None:
    store = Store(
        [
            person("str", traits={"plan": "1"}),
            person("int", traits={"plan": 1}),
            person("float", traits={"plan": 1.0}),
            person("bool", traits={"plan": True}),
            person("null", traits={"plan": None}),
            person("none", traits={}),
            person("obj", traits={"plan": {"x": 1}}),
        ]
    )

    def ask(op: str, value: Any = None) -> set[str]:
        rule: dict[str, Any] = {"type": "profile", "field": "traits.plan", "op": op}
        return store.members(rule if value is None else {**rule, "value": value})

    assert ask("equals", 1) == {"int", "float"}  # 1 == 1.0; true is not a number
    assert ask("equals", "1") == {"str"}
    assert ask("equals", True) == {"bool"}
    assert ask("not_equals", 1) == {"str", "bool", "null", "none", "obj"}
    assert ask("in", [1, "1"]) == {"str", "int", "float"}
    assert ask("not_in", [True, "1"]) == {"int", "float", "null", "none", "obj"}
    assert ask("exists") == {"str", "int", "float", "bool", "obj"}  # JSON null is no value
    assert ask("missing") == {"null", "none"}
    assert ask("gt", 0) == {"int", "float"}
    assert ask("between", [1, 1]) == {"int", "float"}
    assert ask("lt", 1) == set()


def test_trait_paths_reach_into_objects_only(database: Database) -> None:
    store = Store(
        [
            person("koln", traits={"address": {"city": "Köln", "zip code": "50667"}}),
            person("list", traits={"address": ["Köln"]}),
            person("text", traits={"address": "Köln"}),
        ]
    )
    city = {"type": "profile", "field": "traits.address.city", "op": "equals", "value": "Köln"}
    assert store.members(city) == {"koln"}
    spaced = {"type": "profile", "field": "traits.address.zip code", "op": "starts_with"}
    assert store.members({**spaced, "value": "506"}) == {"koln"}
    index = {"type": "profile", "field": "traits.address.0", "op": "exists"}
    assert store.members(index) == set()  # "0" is a key, never an array position


def test_contains_and_starts_with_are_case_sensitive_and_only_on_text(database: Database) -> None:
    store = Store(
        [
            person("gold", traits={"tag": "VIP gold"}),
            person("vip", traits={"tag": "vip"}),
            person("number", traits={"tag": 123}),
        ]
    )
    rule = {"type": "profile", "field": "traits.tag"}
    assert store.members({**rule, "op": "contains", "value": "VIP"}) == {"gold"}
    assert store.members({**rule, "op": "starts_with", "value": "vip"}) == {"vip"}
    assert store.members({**rule, "op": "contains", "value": "12"}) == set()
    assert store.members({**rule, "op": "contains", "value": "_"}) == set()  # no LIKE wildcard


# --- trait dates ---


def _due_people() -> list[Person]:
    due = {"due": "2024-03-10"}
    return [
        person("kiritimati", timezone=KIRITIMATI, traits=due),  # local today 2024-03-11
        person("pago_pago", timezone=PAGO_PAGO, traits=due),  # local today 2024-03-09
        person("utc", traits=due),  # no zone: UTC, today 2024-03-10
        person("unknown_zone", timezone="Mars/Olympus", traits=due),  # read as UTC
    ]


def test_trait_dates_compare_with_each_customers_local_today(database: Database) -> None:
    store = Store(_due_people())
    due = {"type": "profile", "field": "traits.due"}
    assert store.members({**due, "op": "within_next", "value": TODAY_ONLY}) == {
        "utc",
        "unknown_zone",
    }
    assert store.members({**due, "op": "within_last", "value": days(1)}) == {
        "kiritimati",  # 03-10 .. 03-11
        "utc",  # 03-09 .. 03-10
        "unknown_zone",
    }
    assert store.members({**due, "op": "within_next", "value": days(1)}) == {
        "pago_pago",  # 03-09 .. 03-10
        "utc",
        "unknown_zone",
    }
    hours = {"amount": 47, "unit": "hours"}  # whole days: 1
    assert store.members({**due, "op": "within_next", "value": hours}) == {
        "pago_pago",
        "utc",
        "unknown_zone",
    }
    assert store.members({**due, "op": "before", "value": "2024-03-10"}) == set()
    assert len(store.members({**due, "op": "after", "value": "2024-03-09"})) == 4


def test_trait_dates_must_be_real_dates(database: Database) -> None:
    store = Store(
        [
            person("leap", traits={"d": "2024-02-29T10:00:00Z"}),
            person("not_leap", traits={"d": "2023-02-29"}),
            person("short", traits={"d": "2024-2-29"}),
            person("month", traits={"d": "2024-13-01"}),
            person("april", traits={"d": "2024-04-31"}),
            person("year_0", traits={"d": "0000-01-01"}),
            person("number", traits={"d": 20240229}),
            person("words", traits={"d": "yesterday!"}),
        ]
    )
    after = {"type": "profile", "field": "traits.d", "op": "after", "value": "1999-12-31"}
    assert store.members(after) == {"leap"}
    before = {"type": "profile", "field": "traits.d", "op": "before", "value": "2999-12-31"}
    assert store.members(before) == {"leap"}


def test_anniversary_of_feb_29_falls_on_feb_28_without_a_leap_day(database: Database) -> None:
    people = [
        person("leapling", traits={"born": "1992-02-29"}),
        person("feb_28", traits={"born": "1991-02-28"}),
        person("mar_1", traits={"born": "1990-03-01"}),
        person("kiritimati", timezone=KIRITIMATI, traits={"born": "1992-02-29"}),
        person("pago_pago", timezone=PAGO_PAGO, traits={"born": "1992-02-29"}),
    ]
    born = {"type": "profile", "field": "traits.born", "op": "anniversary_within"}
    # 2023 has no Feb 29; in Kiritimati it is already Mar 1, in Pago Pago still Feb 28.
    store = Store(people, now=at("2023-02-28T12:00:00"))
    assert store.members({**born, "value": TODAY_ONLY}) == {"leapling", "feb_28", "pago_pago"}
    assert store.members({**born, "value": days(1)}) == {
        "leapling",
        "feb_28",
        "mar_1",
        "pago_pago",
    }
    wipe()
    # 2024 has one: Feb 28 is just Feb 28, and the leap day is the next day (already
    # today in Kiritimati).
    store = Store(people, now=at("2024-02-28T12:00:00"))
    assert store.members({**born, "value": TODAY_ONLY}) == {"feb_28", "kiritimati"}
    assert store.members({**born, "value": days(1)}) == {
        "leapling",
        "feb_28",
        "kiritimati",  # its today is Feb 29
        "pago_pago",
    }


def test_anniversary_window_wraps_the_year(database: Database) -> None:
    store = Store(
        [
            person("new_year", traits={"born": "2000-01-01"}),
            person("eve", traits={"born": "1980-12-31"}),
        ],
        now=at("2024-12-31T12:00:00"),
    )
    born = {"type": "profile", "field": "traits.born", "op": "anniversary_within"}
    assert store.members({**born, "value": TODAY_ONLY}) == {"eve"}
    assert store.members({**born, "value": days(1)}) == {"eve", "new_year"}
    assert store.members({**born, "value": days(400)}) == {"eve", "new_year"}


# --- instants: profile timestamps and fact timestamps ---


def test_instant_dates_are_local_midnights(database: Database) -> None:
    # created 2024-03-10 10:00Z: in Kiritimati that is 2024-03-11 00:00 exactly, in Pago
    # Pago 2024-03-09 23:00, in UTC 2024-03-10 10:00.
    created = at("2024-03-10T10:00:00")
    store = Store(
        [
            person("kiritimati", timezone=KIRITIMATI, created_at=created),
            person("pago_pago", timezone=PAGO_PAGO, created_at=created),
            person("utc", created_at=created),
        ]
    )
    rule = {"type": "profile", "field": "created_at", "value": "2024-03-10"}
    assert store.members({**rule, "op": "before"}) == {"pago_pago"}
    assert store.members({**rule, "op": "after"}) == {"kiritimati"}


def test_local_days_across_daylight_saving_changes(database: Database) -> None:
    # New York, 2024-03-10 has 23 hours: it ends at 2024-03-11 04:00Z (EDT).
    store = Store(
        [
            person("at_midnight", timezone=NEW_YORK, created_at=at("2024-03-11T04:00:00")),
            person("before", timezone=NEW_YORK, created_at=at("2024-03-11T03:59:59")),
        ],
        now=at("2024-11-10T12:00:00"),
    )
    after = {"type": "profile", "field": "created_at", "op": "after", "value": "2024-03-10"}
    assert store.members(after) == {"at_midnight"}
    wipe()
    # 2024-11-03 has 25 hours: from 04:00Z (EDT) to 2024-11-04 05:00Z (EST).
    times = {
        "too_early": "2024-11-03T03:59:59",
        "first": "2024-11-03T04:00:00",
        "last": "2024-11-04T04:59:59",
        "too_late": "2024-11-04T05:00:00",
    }
    store = Store(
        [person(k, timezone=NEW_YORK, events=[Ev("Visit", at(t))]) for k, t in times.items()],
        now=at("2024-11-10T12:00:00"),
    )
    window = {"since": "2024-11-03", "until": "2024-11-03"}
    assert store.members({"type": "event", "name": "Visit", "window": window}) == {"first", "last"}


def test_rolling_windows_include_their_edges_and_ignore_the_future(database: Database) -> None:
    week = timedelta(days=7)
    stamps = {
        "edge": NOW - week,
        "just_out": NOW - week - timedelta(microseconds=1),
        "now": NOW,
        "future": NOW + timedelta(seconds=1),
    }
    store = Store([person(k, created_at=t, events=[Ev("Viewed", t)]) for k, t in stamps.items()])
    recent = {"type": "event", "name": "Viewed", "window": {"last": days(7)}}
    assert store.members(recent) == {"edge", "now"}
    assert store.members({"type": "event", "name": "Viewed"}) == {"edge", "just_out", "now"}
    created = {"type": "profile", "field": "created_at", "value": days(7)}
    assert store.members({**created, "op": "within_last"}) == {"edge", "now"}
    assert store.members({**created, "op": "not_within_last"}) == {"just_out", "future"}


def test_fact_numbers_and_times(database: Database) -> None:
    ordered = NOW - timedelta(days=10)
    store = Store(
        [
            person(
                "buyer",
                facts=Facts(
                    orders_count=2,
                    revenue_total_cents=3999,
                    last_order_at=ordered,
                    rfm_recency=5,
                ),
            ),
            person("zero", facts=Facts()),
            person("no_row"),  # no facts row at all: zero counts, no dates
        ]
    )

    def ask(field: str, op: str, value: Any = None) -> set[str]:
        rule: dict[str, Any] = {"type": "fact", "field": field, "op": op}
        return store.members(rule if value is None else {**rule, "value": value})

    assert ask("orders_count", "equals", 0) == {"zero", "no_row"}
    assert ask("orders_count", "equals", "2") == set()  # typed
    assert ask("revenue_total", "equals", 39.99) == {"buyer"}
    assert ask("revenue_total", "lt", 0.01) == {"zero", "no_row"}
    assert ask("average_order_value", "equals", 19.995) == {"buyer"}
    assert ask("average_order_value", "missing") == {"zero", "no_row"}  # no orders: no value
    assert ask("average_order_value", "not_equals", 19.995) == {"zero", "no_row"}
    assert ask("rfm_recency", "gte", 1) == {"buyer"}
    assert ask("rfm_recency", "missing") == {"zero", "no_row"}
    assert ask("rfm_recency", "not_in", [5]) == {"zero", "no_row"}
    assert ask("last_order_at", "within_last", days(60)) == {"buyer"}
    assert ask("last_order_at", "not_within_last", days(60)) == {"zero", "no_row"}
    assert ask("last_order_at", "not_within_last", days(9)) == {"buyer", "zero", "no_row"}
    assert ask("last_order_at", "exists") == {"buyer"}


# --- events ---


def test_counts_that_hold_at_zero_include_customers_without_events(database: Database) -> None:
    store = Store(
        [
            person("none"),
            person("one", events=[Ev("A", NOW - timedelta(hours=1))]),
            person("three", events=[Ev("A", NOW - timedelta(hours=h)) for h in (1, 2, 3)]),
            person("other", events=[Ev("B", NOW - timedelta(hours=h)) for h in (1, 2, 3)]),
        ]
    )
    count = {"type": "event", "name": "A"}
    assert store.members({**count, "op": "lt", "value": 2}) == {"none", "one", "other"}
    assert store.members({**count, "op": "equals", "value": 0}) == {"none", "other"}
    assert store.members({**count, "op": "not_equals", "value": 1}) == {"none", "three", "other"}
    assert store.members({**count, "op": "between", "value": [0, 1]}) == {"none", "one", "other"}
    assert store.members({**count, "op": "gte", "value": 2}) == {"three"}
    assert store.members({**count, "op": "gt", "value": 0.5}) == {"one", "three"}
    assert store.members({**count, "op": "gte", "value": 0}) == {"none", "one", "three", "other"}
    recent = {**count, "window": {"last": {"amount": 90, "unit": "minutes"}}}
    assert store.members({**recent, "op": "lte", "value": 1}) == {"none", "one", "three", "other"}
    assert store.members({**recent, "op": "equals", "value": 1}) == {"one", "three"}


def test_negated_event_conditions(database: Database) -> None:
    """Under a `not` the event subqueries take another shape (probed per customer)."""
    store = Store(
        [
            person("none"),
            person("one", events=[Ev("A", NOW - timedelta(days=3))]),
            person("three", events=[Ev("A", NOW - timedelta(days=d)) for d in (1, 20, 40)]),
        ]
    )

    def negated(rule: dict[str, Any]) -> set[str]:
        return store.members({"type": "not", "rule": rule})

    count = {"type": "event", "name": "A"}
    assert negated(count) == {"none"}
    assert negated({**count, "op": "lt", "value": 2}) == {"three"}
    assert negated({**count, "op": "gte", "value": 2}) == {"none", "one"}
    assert negated({**count, "op": "gte", "value": 0}) == set()
    assert negated({**count, "window": {"last": days(2)}}) == {"none", "one"}
    last = {"type": "event_time", "name": "A", "occurrence": "last"}
    assert negated({**last, "op": "within_last", "value": days(2)}) == {"none", "one"}
    assert negated({**last, "op": "not_within_last", "value": days(2)}) == {"none", "three"}
    first = {"type": "event_time", "name": "A", "occurrence": "first"}
    assert negated({**first, "op": "before", "value": "2024-02-01"}) == {"none", "one"}
    assert negated({**first, "op": "after", "value": "2024-02-01"}) == {"none", "three"}


def test_sum_and_average_read_numbers_only(database: Database) -> None:
    def orders(*revenues: Any) -> list[Ev]:
        return [Ev("Order", NOW - timedelta(hours=1), {"revenue": r}) for r in revenues]

    store = Store(
        [
            person("mixed", events=orders(10, "20", True, 5.5, None)),  # sum 15.5, average 7.75
            person("words", events=orders("x")),  # sum 0, no average
            person("none"),  # sum 0, no average
            person("refund", events=orders(-3)),
        ]
    )
    total = {"type": "event", "name": "Order", "aggregate": "sum", "property": "revenue"}
    assert store.members({**total, "op": "lte", "value": 0}) == {"words", "none", "refund"}
    assert store.members({**total, "op": "equals", "value": 15.5}) == {"mixed"}
    assert store.members({**total, "op": "gt", "value": -1}) == {"mixed", "words", "none"}
    average = {**total, "aggregate": "avg"}
    assert store.members({**average, "op": "lt", "value": 100}) == {"mixed", "refund"}
    assert store.members({**average, "op": "equals", "value": 7.75}) == {"mixed"}
    assert store.members({**average, "op": "not_equals", "value": 1}) == {"mixed", "refund"}


def test_where_predicates_filter_events_by_their_properties(database: Database) -> None:
    def viewed(properties: dict[str, Any]) -> list[Ev]:
        return [Ev("Viewed", NOW - timedelta(hours=1), properties)]

    store = Store(
        [
            person("shoes", events=viewed({"category": "shoes", "price": 50})),
            person("Shoes", events=viewed({"category": "Shoes", "price": 150})),
            person("nested", events=viewed({"item": {"brand": "Acme"}, "price": "50"})),
            person("bare", events=viewed({})),
        ]
    )

    def ask(*where: dict[str, Any]) -> set[str]:
        return store.members({"type": "event", "name": "Viewed", "where": list(where)})

    assert ask({"property": "category", "op": "equals", "value": "shoes"}) == {"shoes"}
    assert ask({"property": "category", "op": "not_equals", "value": "shoes"}) == {
        "Shoes",
        "nested",
        "bare",
    }
    assert ask({"property": "price", "op": "gte", "value": 50}) == {"shoes", "Shoes"}
    assert ask({"property": "item.brand", "op": "exists"}) == {"nested"}
    assert ask(
        {"property": "price", "op": "lt", "value": 100},
        {"property": "category", "op": "exists"},
    ) == {"shoes"}


def test_date_windows_are_local_days_of_each_customer(database: Database) -> None:
    # 2024-03-10 runs 03-09 10:00Z .. 03-10 10:00Z in Kiritimati, 03-10 11:00Z .. 03-11
    # 11:00Z in Pago Pago, 03-10 00:00Z .. 03-11 00:00Z in UTC.
    stamps = {
        "k_first": (KIRITIMATI, "2024-03-09T10:00:00"),
        "k_after": (KIRITIMATI, "2024-03-10T10:00:00"),
        "p_first": (PAGO_PAGO, "2024-03-10T11:00:00"),
        "p_before": (PAGO_PAGO, "2024-03-10T10:59:59"),
        "u_in": (None, "2024-03-10T10:30:00"),
        "u_after": (None, "2024-03-11T00:00:00"),
    }
    store = Store(
        [person(k, timezone=z, events=[Ev("Visit", at(t))]) for k, (z, t) in stamps.items()],
        now=at("2024-03-20T00:00:00"),
    )
    day = {"since": "2024-03-10", "until": "2024-03-10"}
    assert store.members({"type": "event", "name": "Visit", "window": day}) == {
        "k_first",
        "p_first",
        "u_in",
    }
    since = {"type": "event", "name": "Visit", "window": {"since": "2024-03-10"}}
    assert store.members(since) == {"k_first", "k_after", "p_first", "u_in", "u_after"}
    until = {"type": "event", "name": "Visit", "window": {"until": "2024-03-09"}}
    assert store.members(until) == {"p_before"}  # 03-09 23:59:59 in Pago Pago


def test_first_and_last_occurrence(database: Database) -> None:
    now = at("2024-06-01T12:00:00")
    store = Store(
        [
            person(
                "old_and_new",
                events=[Ev("A", at("2024-01-10T00:00:00")), Ev("A", at("2024-05-30T12:00:00"))],
            ),
            person("new", events=[Ev("A", at("2024-05-31T08:00:00"))]),
            person("never"),
            person("future_only", events=[Ev("A", at("2024-06-02T00:00:00"))]),
        ],
        now=now,
    )

    def ask(occurrence: str, op: str, value: Any) -> set[str]:
        return store.members(
            {"type": "event_time", "name": "A", "occurrence": occurrence, "op": op, "value": value}
        )

    assert ask("last", "within_last", days(7)) == {"old_and_new", "new"}
    assert ask("first", "within_last", days(7)) == {"new"}
    assert ask("first", "before", "2024-02-01") == {"old_and_new"}
    assert ask("last", "before", "2024-05-31") == {"old_and_new"}
    assert ask("last", "after", "2024-05-30") == {"new"}
    assert ask("first", "after", "2024-05-30") == {"new"}
    assert ask("first", "not_within_last", days(7)) == {"old_and_new"}  # never: false
    assert ask("last", "not_within_last", days(1)) == {"old_and_new", "new"}


def test_absence_holds_once_the_wait_is_over_without_the_follow_up(database: Database) -> None:
    now = at("2024-06-01T12:00:00")

    def timeline(*events: tuple[str, str]) -> list[Ev]:
        return [Ev(name, at(f"2024-06-01T{clock}")) for name, clock in events]

    store = Store(
        [
            person("pending", events=timeline(("Checkout", "11:30:00"))),
            person("elapsed", events=timeline(("Checkout", "10:00:00"))),
            person("just_up", events=timeline(("Checkout", "11:00:00"))),  # deadline == now
            person("bought", events=timeline(("Checkout", "09:00:00"), ("Order", "09:30:00"))),
            person("at_edge", events=timeline(("Checkout", "08:00:00"), ("Order", "09:00:00"))),
            person("late", events=timeline(("Checkout", "07:00:00"), ("Order", "08:00:01"))),
            person("earlier", events=timeline(("Order", "06:59:00"), ("Checkout", "07:00:00"))),
            person("retried", events=timeline(("Checkout", "05:00:00"), ("Checkout", "11:45:00"))),
            person("browsing", events=timeline(("Order", "05:00:00"))),
        ],
        now=now,
    )
    rule = {
        "type": "absence",
        "name": "Checkout",
        "then_not": {"name": "Order"},
        "within": {"amount": 1, "unit": "hours"},
    }
    assert store.members(rule) == {"elapsed", "just_up", "late", "earlier"}
    short = {**rule, "window": {"last": {"amount": 2, "unit": "hours"}}}
    # From 10:00 on (the edge is inside): elapsed and just_up; retried's last is pending.
    assert store.members(short) == {"elapsed", "just_up"}


def test_funnel_steps_in_order_within_the_limit(database: Database) -> None:
    now = at("2024-06-01T12:00:00")

    def timeline(*events: tuple[str, str]) -> list[Ev]:
        return [Ev(name, at(stamp)) for name, stamp in events]

    day = "2024-06-01T"
    store = Store(
        [
            person(
                "ordered",
                events=timeline(("V", day + "01:00"), ("A", day + "02:00"), ("B", day + "03:00")),
            ),
            person(
                "reversed",
                events=timeline(("B", day + "01:00"), ("A", day + "02:00"), ("V", day + "03:00")),
            ),
            person(
                "same_time",
                events=timeline(("V", day + "05:00"), ("A", day + "05:00"), ("B", day + "05:00")),
            ),
            person(
                "slow",
                events=timeline(
                    ("V", day + "01:00"), ("A", day + "01:30"), ("B", day + "02:00:01")
                ),
            ),
            person(
                "retried",
                events=timeline(
                    ("V", day + "01:00"),
                    ("V", day + "01:10"),
                    ("A", day + "01:30"),
                    ("B", day + "02:00:01"),
                ),
            ),
            person(
                "future",
                events=timeline(("V", day + "01:00"), ("A", day + "02:00"), ("B", day + "13:00")),
            ),
            person(
                "old_start",
                events=timeline(
                    ("V", "2024-05-20T00:00"), ("A", day + "01:00"), ("B", day + "02:00")
                ),
            ),
        ],
        now=now,
    )
    steps = [{"name": "V"}, {"name": "A"}, {"name": "B"}]
    funnel: dict[str, Any] = {"type": "funnel", "steps": steps}
    assert store.members(funnel) == {"ordered", "same_time", "slow", "retried", "old_start"}
    within = {**funnel, "within": {"amount": 1, "unit": "hours"}}
    assert store.members(within) == {"same_time", "retried"}  # 01:10 -> 02:00:01 is 50 min
    windowed = {**funnel, "window": {"last": days(1)}}
    assert store.members(windowed) == {"ordered", "same_time", "slow", "retried"}


# --- consents, reachability, groups, segments ---


def test_consent_by_channel_and_topic(database: Database) -> None:
    store = Store(
        [
            person("both", consents={("email", ""): "subscribed", ("email", "news"): "subscribed"}),
            person(
                "channel_off",
                consents={("email", ""): "unsubscribed", ("email", "news"): "subscribed"},
            ),
            person("nothing"),
            person("topic_only", consents={("email", "news"): "subscribed"}),
            person("unknown_row", consents={("email", ""): "unknown"}),
            person("sms_only", consents={("sms", ""): "subscribed"}),
        ]
    )
    email = {"type": "consent", "channel": "email"}
    assert store.members(email) == {"both"}
    assert store.members({**email, "topic": "news"}) == {"both", "topic_only"}
    assert store.members({**email, "status": "unsubscribed"}) == {"channel_off"}
    assert store.members({**email, "status": "unknown"}) == {
        "nothing",
        "topic_only",
        "unknown_row",
        "sms_only",
    }
    assert store.members({**email, "topic": "news", "status": "unknown"}) == {
        "nothing",
        "unknown_row",
        "sms_only",
    }


def test_reachable_needs_the_address_and_no_unsubscribe(database: Database) -> None:
    store = Store(
        [
            person("mail", email="a@example.com"),
            person("mail_off", email="b@example.com", consents={("email", ""): "unsubscribed"}),
            person("no_mail"),
            person(
                "topic_off", email="c@example.com", consents={("email", "news"): "unsubscribed"}
            ),
            person("phone", phone="+15550001", consents={("sms", ""): "subscribed"}),
            person("no_whatsapp", phone="+15550002", consents={("whatsapp", ""): "unsubscribed"}),
        ]
    )
    assert store.members({"type": "reachable", "channel": "email"}) == {"mail", "topic_off"}
    assert store.members({"type": "reachable", "channel": "sms"}) == {"phone", "no_whatsapp"}
    assert store.members({"type": "reachable", "channel": "whatsapp"}) == {"phone"}


def test_group_conditions_match_some_group(database: Database) -> None:
    acme = Grp("acme", {"plan": "pro", "seats": 10})
    globex = Grp("globex", {"plan": "free", "seats": 2})
    store = Store(
        [
            person("acme", groups=[acme]),
            person("globex", groups=[globex]),
            person("both", groups=[acme, globex]),
            person("none"),
        ]
    )
    assert store.members(
        {"type": "group", "field": "group_key", "op": "equals", "value": "acme"}
    ) == {
        "acme",
        "both",
    }
    seats = {"type": "group", "field": "traits.seats", "op": "gte", "value": 5}
    assert store.members(seats) == {"acme", "both"}
    not_pro = {"type": "group", "field": "traits.plan", "op": "not_equals", "value": "pro"}
    assert store.members(not_pro) == {"globex", "both"}  # some group that is not pro


def test_segment_membership_and_unknown_segments(database: Database) -> None:
    store = Store(
        [person("a", segments={"vip"}), person("b", segments={"vip"}), person("c")],
        segments=["vip"],
    )
    assert store.members({"type": "segment", "segment": "vip"}) == {"a", "b"}
    assert store.members({"type": "segment", "segment": "vip", "member": False}) == {"c"}
    with session_scope(readonly=True) as session, pytest.raises(KeyError, match="ghost"):
        list(
            member_ids(
                session, parse_rule({"type": "segment", "segment": "ghost"}), store.context()
            )
        )


def test_not_of_a_missing_value_holds(database: Database) -> None:
    store = Store([person("gold", traits={"plan": "gold"}), person("none")])
    gold = {"type": "profile", "field": "traits.plan", "op": "equals", "value": "gold"}
    assert store.members({"type": "not", "rule": gold}) == {"none"}
    bigger = {"type": "profile", "field": "traits.plan", "op": "gt", "value": 1}
    assert store.members({"type": "not", "rule": bigger}) == {"gold", "none"}
    assert store.members({"type": "or", "rules": [bigger, {"type": "not", "rule": gold}]}) == {
        "none"
    }
    assert store.members({"type": "and", "rules": [{"type": "not", "rule": bigger}, gold]}) == {
        "gold"
    }


# --- the other entry points ---


def test_evaluate_for_answers_each_rule_for_the_candidates_only(database: Database) -> None:
    Store(
        [
            person("a", traits={"plan": "gold"}, events=[Ev("A", NOW)]),
            person("b", traits={"plan": "gold"}),
            person("c", events=[Ev("A", NOW)]),
        ]
    )
    rules = {
        "gold": parse_rule(
            {"type": "profile", "field": "traits.plan", "op": "equals", "value": "gold"}
        ),
        "never_a": parse_rule({"type": "event", "name": "A", "op": "equals", "value": 0}),
    }
    ctx = Context(NOW, (None,), {}, candidates=["a", "b", "ghost"])
    with session_scope(readonly=True) as session:
        assert evaluate_for(session, rules, ctx) == {"gold": {"a", "b"}, "never_a": {"b"}}
        assert evaluate_for(session, rules, replace(ctx, candidates=[])) == {
            "gold": set(),
            "never_a": set(),
        }
        with pytest.raises(ValueError, match="candidates"):
            evaluate_for(session, rules, replace(ctx, candidates=None))


def test_many_candidates_are_split_into_statements(database: Database) -> None:
    people = [person(f"c{i:04d}", traits={"n": i}) for i in range(1200)]
    Store(people)
    rule = parse_rule({"type": "profile", "field": "traits.n", "op": "lt", "value": 700})
    ids = [p.id for p in people]
    with session_scope(readonly=True) as session:
        ctx = Context(NOW, timezones(session, ids), {}, candidates=ids)
        assert evaluate_for(session, {"r": rule}, ctx)["r"] == {f"c{i:04d}" for i in range(700)}
        assert len(set(member_ids(session, rule, ctx))) == 700
        assert count_and_sample(session, rule, ctx, sample=3)[0] == 700


def test_explain_gives_each_nodes_verdict_and_measure(database: Database) -> None:
    store = Store(
        [
            person(
                "a",
                traits={"plan": "gold"},
                facts=Facts(orders_count=3, revenue_total_cents=1050),
                consents={("email", ""): "subscribed"},
                events=[Ev("Order", NOW - timedelta(days=d), {"revenue": 10}) for d in (1, 2, 40)],
            )
        ]
    )
    rule = parse_rule(
        {
            "type": "and",
            "rules": [
                {"type": "profile", "field": "traits.plan", "op": "equals", "value": "gold"},
                {
                    "type": "event",
                    "name": "Order",
                    "window": {"last": days(30)},
                    "op": "gte",
                    "value": 2,
                },
                {
                    "type": "not",
                    "rule": {"type": "fact", "field": "revenue_total", "op": "gt", "value": 10},
                },
                {
                    "type": "event",
                    "name": "Order",
                    "aggregate": "sum",
                    "property": "revenue",
                    "op": "gt",
                    "value": 0,
                },
                {
                    "type": "event_time",
                    "name": "Order",
                    "occurrence": "last",
                    "op": "within_last",
                    "value": days(2),
                },
                {"type": "consent", "channel": "email"},
            ],
        }
    )
    with session_scope(readonly=True) as session:
        verdicts = explain(session, rule, "a", store.context(["a"]))
        with pytest.raises(LookupError):
            explain(session, rule, "ghost", store.context(["ghost"]))
    assert [(v.path, v.type, v.holds) for v in verdicts] == [
        ("", "and", False),
        ("rules.0", "profile", True),
        ("rules.1", "event", True),
        ("rules.2", "not", False),
        ("rules.2.rule", "fact", True),
        ("rules.3", "event", True),
        ("rules.4", "event_time", True),
        ("rules.5", "consent", True),
    ]
    measured = [v.measured for v in verdicts]
    assert measured[:5] == [None, "gold", 2, None, 10.5]
    assert measured[5] == 30
    assert measured[6] == NOW - timedelta(days=1)
    assert measured[7] == "subscribed"


def test_count_and_sample_previews_a_rule(database: Database) -> None:
    store = Store([person(f"p{i}", traits={"n": i}) for i in range(8)])
    rule = parse_rule({"type": "profile", "field": "traits.n", "op": "gte", "value": 3})
    with session_scope(readonly=True) as session:
        count, sample = count_and_sample(session, rule, store.context(), sample=2)
        assert count == 5
        assert len(sample) == 2 and set(sample) <= {f"p{i}" for i in range(3, 8)}
        none = parse_rule({"type": "profile", "field": "traits.n", "op": "gt", "value": 99})
        assert count_and_sample(session, none, store.context()) == (0, [])


def test_timezones_lists_the_distinct_zones(database: Database) -> None:
    Store(
        [
            person("a", timezone=KIRITIMATI),
            person("b"),
            person("c", timezone=KIRITIMATI),
            person("d", timezone=PAGO_PAGO),
        ]
    )
    with session_scope(readonly=True) as session:
        assert timezones(session) == (None, KIRITIMATI, PAGO_PAGO)
        assert timezones(session, ["a", "c"]) == (KIRITIMATI,)


def test_edge_crossers_find_stored_times_passing_the_edge(database: Database) -> None:
    since, until = NOW - timedelta(minutes=1), NOW
    hour = timedelta(hours=1)
    Store(
        [
            person("crossed", events=[Ev("A", since - hour + timedelta(seconds=1))]),
            person("at_end", events=[Ev("A", until - hour)]),
            person("at_start", events=[Ev("A", since - hour)]),  # crossed in the sweep before
            person("other_name", events=[Ev("B", until - hour)]),
            person("fact", facts=Facts(last_order_at=until - hour)),
            person("profile", created_at=until - hour),
        ]
    )
    with session_scope(readonly=True) as session:
        crossed = edge_crossers(session, RollingEdge("event", "A", hour), since=since, until=until)
        assert crossed == {"crossed", "at_end"}
        edge = RollingEdge("fact", "last_order_at", hour)
        assert edge_crossers(session, edge, since=since, until=until) == {"fact"}
        edge = RollingEdge("profile", "created_at", hour)
        assert edge_crossers(session, edge, since=since, until=until) == {"profile"}
        with pytest.raises(ValueError, match="rolling edge"):
            edge_crossers(session, RollingEdge("fact", "email", hour), since=since, until=until)


def test_live_loading_reads_only_the_history_and_properties_the_rules_read(
    database: Database,
) -> None:
    """A month-long window loads a month of that name (from its very edge), without
    properties unless a rule reads them; a name read without window loads all of it."""
    month = timedelta(days=30)
    shoes = {"category": "shoes"}
    events = [
        Ev("Viewed", NOW - month - timedelta(microseconds=1), shoes),
        Ev("Viewed", NOW - month, shoes),
        Ev("Viewed", NOW - timedelta(days=1), shoes),
        Ev("Ordered", NOW - timedelta(days=400), {"revenue": 5}),
    ]
    load([person("ann", events=events)])
    reads = {
        "Viewed": EventRead(month, properties=False),
        "Ordered": EventRead(None, properties=True),
    }
    with session_scope(readonly=True) as session:
        (ann,) = load_people(session, ["ann"], event_reads=reads, now=NOW, segment_ids={})
    loaded = sorted((e.name, e.timestamp, e.properties) for e in ann.events)
    assert loaded == [
        ("Ordered", NOW - timedelta(days=400), {"revenue": 5}),
        ("Viewed", NOW - month, {}),
        ("Viewed", NOW - timedelta(days=1), {}),
    ]
