"""Compiled rules (what live re-evaluation runs) answer what the reference `holds` answers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from regulars.segments import engine
from regulars.segments.engine import Event, Person
from regulars.segments.rules import Rule, parse_rule
from tests.segments.test_compiler_properties import NOWS, any_leaf, event_leaf, people, trees

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
Leaves = Callable[[datetime], st.SearchStrategy[dict[str, Any]]]
Case = tuple[datetime, list[Person], Rule]


@st.composite
def cases(draw: st.DrawFn, leaf: Leaves, max_events: int) -> Case:
    now = draw(st.sampled_from(NOWS))
    crowd = draw(people(now, max_events=max_events))
    return now, crowd, parse_rule(draw(trees(leaf(now))))


def _agrees(case: Case) -> None:
    now, crowd, rule = case
    check = engine.compiled(rule)
    for person in crowd:
        assert check(person, now) == engine.holds(rule, person, now), (person, rule)


@settings(max_examples=400, deadline=None)
@given(case=cases(any_leaf, 6))
def test_compiled_rules_agree_with_the_reference(case: Case) -> None:
    _agrees(case)


@settings(max_examples=300, deadline=None)
@given(case=cases(event_leaf, 12))
def test_compiled_event_rules_agree_on_busier_timelines(case: Case) -> None:
    _agrees(case)


def _orders_in_a_week(at_least: int) -> Rule:
    window = {"last": {"amount": 7, "unit": "days"}}
    return parse_rule(
        {"type": "event", "name": "Order", "op": "gte", "value": at_least, "window": window}
    )


def test_a_rolling_count_includes_both_edges_of_its_window() -> None:
    edges = [NOW - timedelta(days=7), NOW, NOW + timedelta(seconds=1)]  # the last is future
    person = Person(
        id="p", created_at=NOW, updated_at=NOW, events=[Event("Order", t) for t in edges]
    )
    assert engine.compiled(_orders_in_a_week(2))(person, NOW)
    assert not engine.compiled(_orders_in_a_week(3))(person, NOW)


def test_a_shared_count_is_counted_again_once_events_were_added() -> None:
    person = Person(id="p", created_at=NOW, updated_at=NOW, events=[Event("Order", NOW)])
    twice = engine.compiled(_orders_in_a_week(2))
    assert not twice(person, NOW)
    person.events.append(Event("Order", NOW - timedelta(days=1)))
    assert twice(person, NOW)
    assert person.count_between("Order", NOW - timedelta(days=7), NOW) == 2
    assert person.count_between("Order", NOW - timedelta(hours=1), NOW) == 1
