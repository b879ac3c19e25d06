"""The rule tree: validation with paths, the canonical form, and what a rule depends on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from regulars.segments.rules import (
    EventRead,
    RollingEdge,
    RuleInvalid,
    TimeDependence,
    dependencies,
    dump_rule,
    event_reads,
    parse_rule,
)
from regulars.segments.words import describe

LAST_90_DAYS = {"last": {"amount": 90, "unit": "days"}}


def errors_of(raw: object) -> list[dict[str, str]]:
    with pytest.raises(RuleInvalid) as invalid:
        parse_rule(raw)
    return invalid.value.errors


def test_a_bad_node_deep_in_the_tree_is_named_by_its_path() -> None:
    rule = {
        "type": "and",
        "rules": [
            {"type": "profile", "field": "email", "op": "exists"},
            {"type": "not", "rule": {"type": "event", "name": "x", "window": {"last": {}}}},
        ],
    }
    paths = [e["path"] for e in errors_of(rule)]
    assert "rules.1.rule.window.last.amount" in paths
    assert "rules.1.rule.window.last.unit" in paths


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (
            {"type": "profile", "field": "traits.age", "op": "gt", "value": "ten"},
            "gt needs a number",
        ),
        ({"type": "profile", "field": "shoe_size", "op": "exists"}, "unknown field 'shoe_size'"),
        ({"type": "fact", "field": "orders_count", "op": "contains", "value": "1"}, "not allowed"),
        ({"type": "profile", "field": "email", "op": "in", "value": []}, "list of 1 to 1000"),
        ({"type": "event", "name": "x", "aggregate": "sum"}, "sum and avg need a property"),
        ({"type": "profile", "field": "traits.a..b", "op": "exists"}, "each name between dots"),
        (
            {"type": "profile", "field": "traits.birthday", "op": "before", "value": "May 1"},
            "YYYY-MM-DD",
        ),
        ({"type": "consent", "channel": "fax"}, "Input should be"),
        ({"type": "segment", "segment": "x", "colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_each_kind_of_mistake_gets_a_message_that_says_what_to_fix(
    node: dict[str, Any], message: str
) -> None:
    assert any(message in e["message"] for e in errors_of(node)), errors_of(node)


def test_depth_and_size_are_limited() -> None:
    deep: dict[str, Any] = {"type": "profile", "field": "email", "op": "exists"}
    for _ in range(12):
        deep = {"type": "not", "rule": deep}
    assert "nested over 12 deep" in errors_of(deep)[0]["message"]


def test_the_canonical_form_leaves_defaults_out_and_survives_a_round_trip() -> None:
    raw = {"type": "event", "name": "Order Completed", "op": "gte", "value": 1, "where": []}
    canonical = dump_rule(parse_rule(raw))
    assert canonical == {"type": "event", "name": "Order Completed"}
    assert dump_rule(parse_rule(canonical)) == canonical


def test_dependencies_name_what_live_re_evaluation_listens_to() -> None:
    rule = parse_rule(
        {
            "type": "or",
            "rules": [
                {"type": "event", "name": "Order Completed", "window": LAST_90_DAYS},
                {"type": "consent", "channel": "sms"},
                {"type": "group", "field": "traits.plan", "op": "equals", "value": "pro"},
                {"type": "segment", "segment": "vips"},
            ],
        }
    )
    deps = dependencies(rule)
    assert deps.event_names == {"Order Completed"}
    assert (deps.profile, deps.facts, deps.consents, deps.groups) == (False, False, True, True)
    assert deps.segments == {"vips"}
    assert deps.rolling == (RollingEdge("event", "Order Completed", timedelta(days=90)),)
    assert deps.time is TimeDependence.WINDOW


def test_ingested_events_wake_rules_on_activity_facts_but_not_on_rfm_scores_alone() -> None:
    rfm = parse_rule({"type": "fact", "field": "rfm_recency", "op": "gte", "value": 4})
    both = parse_rule(
        {
            "type": "and",
            "rules": [
                {"type": "fact", "field": "rfm_recency", "op": "gte", "value": 4},
                {"type": "fact", "field": "orders_count", "op": "gte", "value": 2},
            ],
        }
    )
    assert dependencies(rfm).facts is False  # left to the RFM refresh
    assert dependencies(both).facts is True


def test_an_absence_depends_on_the_event_that_ends_the_wait_too() -> None:
    rule = parse_rule(
        {
            "type": "absence",
            "name": "Checkout Started",
            "then_not": {"name": "Order Completed"},
            "within": {"amount": 1, "unit": "hours"},
        }
    )
    assert dependencies(rule).event_names == {"Checkout Started", "Order Completed"}


def test_a_rule_reads_each_event_name_as_far_back_as_its_widest_window_needs() -> None:
    rule = parse_rule(
        {
            "type": "and",
            "rules": [
                {"type": "event", "name": "Order Completed", "window": LAST_90_DAYS},
                {"type": "event", "name": "Order Completed", "value": 2,
                 "window": {"last": {"amount": 2, "unit": "weeks"}}},
                {"type": "not", "rule": {"type": "event", "name": "Product Viewed",
                 "where": [{"property": "category", "op": "equals", "value": "shoes"}],
                 "window": {"last": {"amount": 30, "unit": "days"}}}},
                {"type": "event", "name": "Order Refunded", "aggregate": "sum",
                 "property": "revenue", "value": 10},
                {"type": "event", "name": "Page Viewed",
                 "window": {"since": "2026-01-01"}},
                {"type": "event_time", "name": "Cart Viewed", "occurrence": "last",
                 "op": "within_last", "value": {"amount": 1, "unit": "days"}},
            ],
        }
    )  # fmt: skip
    assert event_reads(rule) == {
        "Order Completed": EventRead(timedelta(days=90), properties=False),
        "Product Viewed": EventRead(timedelta(days=30), properties=True),
        "Order Refunded": EventRead(None, properties=True),  # ever, and the sum reads revenue
        "Page Viewed": EventRead(None, properties=False),  # a fixed date: all of it
        "Cart Viewed": EventRead(None, properties=False),  # the last one, however old
    }


def test_an_absence_and_a_funnel_read_their_later_events_within_the_first_ones_window() -> None:
    week = {"last": {"amount": 7, "unit": "days"}}
    absence = {
        "type": "absence",
        "name": "Checkout Started",
        "window": week,
        "then_not": {"name": "Order Completed"},
        "within": {"amount": 1, "unit": "hours"},
    }
    funnel = {"type": "funnel", "window": week, "steps": [
        {"name": "Product Viewed"}, {"name": "Product Added", "where": [
            {"property": "sku", "op": "exists"}]}]}  # fmt: skip
    rule = parse_rule({"type": "or", "rules": [absence, funnel]})
    seven_days = timedelta(days=7)
    assert event_reads(rule) == {
        "Checkout Started": EventRead(seven_days, properties=False),
        "Order Completed": EventRead(seven_days, properties=False),
        "Product Viewed": EventRead(seven_days, properties=False),
        "Product Added": EventRead(seven_days, properties=True),
    }


@pytest.mark.parametrize(
    ("node", "time"),
    [
        ({"type": "profile", "field": "traits.city", "op": "equals", "value": "X"}, "none"),
        ({"type": "fact", "field": "last_order_at", "op": "before", "value": "2026-01-01"}, "none"),
        (
            {
                "type": "event",
                "name": "a",
                "window": {"since": "2026-01-01", "until": "2026-02-01"},
            },
            "none",
        ),
        (
            {
                "type": "fact",
                "field": "last_order_at",
                "op": "not_within_last",
                "value": {"amount": 60, "unit": "days"},
            },
            "window",
        ),
        (
            {
                "type": "absence",
                "name": "Checkout Started",
                "then_not": {"name": "Order Completed"},
                "within": {"amount": 1, "unit": "hours"},
            },
            "window",
        ),
        (
            {
                "type": "profile",
                "field": "traits.birthday",
                "op": "anniversary_within",
                "value": {"amount": 7, "unit": "days"},
            },
            "calendar",
        ),
        (
            {"type": "profile", "field": "traits.birthday", "op": "before", "value": "2000-01-01"},
            "none",
        ),
    ],
)
def test_time_dependence_is_only_what_time_alone_can_flip(node: dict[str, Any], time: str) -> None:
    assert dependencies(parse_rule(node)).time.value == time


def test_every_node_type_has_words() -> None:
    rule = parse_rule(
        {
            "type": "funnel",
            "steps": [{"name": "Product Viewed"}, {"name": "Order Completed"}],
            "within": {"amount": 1, "unit": "days"},
        }
    )
    assert describe(rule) == "performed 'Product Viewed', then 'Order Completed', within 1 day ever"
    sum_rule = parse_rule(
        {
            "type": "event",
            "name": "Order Completed",
            "aggregate": "sum",
            "property": "revenue",
            "op": "between",
            "value": [10, 20],
            "window": LAST_90_DAYS,
        }
    )
    assert describe(sum_rule) == (
        "'Order Completed' sum of revenue in the last 90 days is between [10, 20]"
    )
