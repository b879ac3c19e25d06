"""The built-in segments: valid canonical rules, unique keys, lifecycle stages and RFM groups
that each put a customer in exactly one place, thresholds from the settings, and the grid the
docs show.

The rules are checked through a small reference evaluator of the fact conditions they use
(a time "within the last D" means at or after now - D; "not within the last D" is its
complement; an empty fact satisfies neither)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from regulars.config import Settings
from regulars.segments.builtin import BuiltinSegment, builtin_segments
from regulars.segments.rules import (
    And,
    Duration,
    FactCondition,
    Not,
    Op,
    Or,
    Rule,
    dump_rule,
    parse_rule,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
DEFAULTS = Settings(
    lifecycle_new_days=30,
    lifecycle_active_days=90,
    lifecycle_at_risk_days=180,
    lifecycle_loyal_orders=3,
)
CUSTOM = Settings(
    lifecycle_new_days=7,
    lifecycle_active_days=60,
    lifecycle_at_risk_days=365,
    lifecycle_loyal_orders=5,
)
TIGHT = Settings(  # the narrowest stages the settings allow
    lifecycle_new_days=7,
    lifecycle_active_days=7,
    lifecycle_at_risk_days=8,
    lifecycle_loyal_orders=2,
)


@dataclass(frozen=True)
class Facts:
    orders_count: int = 0
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    rfm_recency: int | None = None
    rfm_frequency: int | None = None
    rfm_monetary: int | None = None


def holds(rule: Rule, facts: Facts) -> bool:
    if isinstance(rule, And):
        return all(holds(child, facts) for child in rule.rules)
    if isinstance(rule, Or):
        return any(holds(child, facts) for child in rule.rules)
    if isinstance(rule, Not):
        return not holds(rule.rule, facts)
    assert isinstance(rule, FactCondition), f"built-ins read facts only, not {rule}"
    value = getattr(facts, rule.field)
    return value is not None and _compare(rule.op, value, rule.value)


def _compare(op: Op, value: int | datetime, target: object) -> bool:
    if op in (Op.WITHIN_LAST, Op.NOT_WITHIN_LAST):
        assert isinstance(value, datetime) and isinstance(target, Duration)
        within = value >= NOW - target.delta()
        return within if op is Op.WITHIN_LAST else not within
    assert isinstance(value, int)
    if op is Op.BETWEEN:
        assert isinstance(target, list)
        return bool(target[0] <= value <= target[1])
    assert isinstance(target, int)
    comparisons = {Op.EQUALS: value == target, Op.GTE: value >= target, Op.LT: value < target}
    assert op in comparisons, f"no reference for {op}"
    return comparisons[op]


def members(segments: list[BuiltinSegment], facts: Facts) -> list[str]:
    return [s.key for s in segments if holds(parse_rule(s.rule), facts)]


def rfm(settings: Settings = DEFAULTS) -> list[BuiltinSegment]:
    return [s for s in builtin_segments(settings) if s.key.startswith("rfm_")]


def lifecycle(settings: Settings) -> list[BuiltinSegment]:
    return [s for s in builtin_segments(settings) if s.key.startswith("lifecycle_")]


def ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


@pytest.mark.parametrize("settings", [DEFAULTS, CUSTOM, TIGHT])
def test_every_builtin_rule_parses_in_its_canonical_form(settings: Settings) -> None:
    for segment in builtin_segments(settings):
        assert dump_rule(parse_rule(segment.rule)) == segment.rule, segment.key


def test_keys_and_names_are_unique_and_fit_the_segments_table() -> None:
    segments = builtin_segments(DEFAULTS)
    assert len(segments) == 5 + 11
    assert len({s.key for s in segments}) == len(segments)
    assert len({s.name for s in segments}) == len(segments)
    for segment in segments:
        assert segment.key.startswith(("lifecycle_", "rfm_")) and len(segment.key) <= 100
        assert 0 < len(segment.name) <= 200
        assert segment.description.endswith(".") and len(segment.description) <= 2000


def test_rfm_groups_partition_all_125_score_combinations() -> None:
    segments = rfm()
    used: set[str] = set()
    for r, f, m in itertools.product(range(1, 6), repeat=3):
        found = members(segments, Facts(1, ago(1), ago(1), r, f, m))
        assert len(found) == 1, (r, f, m, found)
        used.update(found)
    assert used == {s.key for s in segments}  # no group is empty


def test_rfm_groups_ignore_the_monetary_score() -> None:
    for r, f in itertools.product(range(1, 6), repeat=2):
        groups = {tuple(members(rfm(), Facts(1, None, None, r, f, m))) for m in range(1, 6)}
        assert len(groups) == 1, (r, f, groups)


def test_the_documented_grid_is_the_grid() -> None:
    names = {s.name.removeprefix("RFM: "): s.key for s in rfm()}
    lines = (DOCS / "segments-builtin.md").read_text().splitlines()
    rows = [line.strip().strip("|").split("|") for line in lines if line.startswith("| **")]
    assert len(rows) == 5
    for row in rows:
        recency = int(row[0].strip().strip("*"))
        for frequency, name in enumerate(row[1:], start=1):
            found = members(rfm(), Facts(1, None, None, recency, frequency, 3))
            assert found == [names[name.strip()]], (recency, frequency)


def test_champions_and_lost_sit_at_the_corners() -> None:
    assert members(rfm(), Facts(9, ago(1), ago(1), 5, 5, 5)) == ["rfm_champions"]
    assert members(rfm(), Facts(1, ago(400), ago(400), 1, 1, 1)) == ["rfm_lost"]
    assert members(rfm(), Facts(1, ago(1), ago(1), 5, 1, 1)) == ["rfm_new"]
    assert members(rfm(), Facts(9, ago(900), ago(200), 1, 5, 5)) == ["rfm_cannot_lose_them"]


def test_customers_without_orders_are_in_no_builtin_segment() -> None:
    assert members(builtin_segments(DEFAULTS), Facts()) == []


def expected_stage(first_days: int, last_days: int, orders: int, settings: Settings) -> str:
    """The stages as docs/segments-builtin.md states them, in order."""
    if first_days <= settings.lifecycle_new_days:
        return "lifecycle_new"
    if last_days <= settings.lifecycle_active_days:
        loyal = orders >= settings.lifecycle_loyal_orders
        return "lifecycle_loyal" if loyal else "lifecycle_active"
    if last_days <= settings.lifecycle_at_risk_days:
        return "lifecycle_at_risk"
    return "lifecycle_lapsed"


@pytest.mark.parametrize("settings", [DEFAULTS, CUSTOM, TIGHT])
def test_lifecycle_stages_put_each_customer_who_ordered_in_exactly_one(
    settings: Settings,
) -> None:
    edges = {
        settings.lifecycle_new_days,
        settings.lifecycle_active_days,
        settings.lifecycle_at_risk_days,
    }
    days = sorted({0, 1, 1000} | {d + delta for d in edges for delta in (-1, 0, 1)})
    stages = lifecycle(settings)
    seen: set[str] = set()
    for first_days, last_days in itertools.combinations_with_replacement(days, 2):
        first_days, last_days = max(first_days, last_days), min(first_days, last_days)
        for orders in (1, 2, settings.lifecycle_loyal_orders, 12):
            found = members(stages, Facts(orders, ago(first_days), ago(last_days)))
            assert found == [expected_stage(first_days, last_days, orders, settings)]
            seen.update(found)
    assert seen == {s.key for s in stages}


def test_lifecycle_thresholds_follow_the_settings() -> None:
    ten_days_five_orders = Facts(5, ago(10), ago(10))
    assert members(lifecycle(DEFAULTS), ten_days_five_orders) == ["lifecycle_new"]
    assert members(lifecycle(CUSTOM), ten_days_five_orders) == ["lifecycle_loyal"]
    last_ordered_200_days_ago = Facts(2, ago(300), ago(200))
    assert members(lifecycle(DEFAULTS), last_ordered_200_days_ago) == ["lifecycle_lapsed"]
    assert members(lifecycle(CUSTOM), last_ordered_200_days_ago) == ["lifecycle_at_risk"]
    descriptions = {s.key: s.description for s in lifecycle(CUSTOM)}
    assert descriptions["lifecycle_new"] == "Placed their first order in the last 7 days."
    assert "At least 5 orders" in descriptions["lifecycle_loyal"]
    assert descriptions["lifecycle_at_risk"] == "Last order between 60 and 365 days ago."
    assert descriptions["lifecycle_lapsed"] == "Last order over 365 days ago."


@pytest.mark.parametrize(
    "values",
    [
        {"lifecycle_new_days": 91},  # new would outlast active
        {"lifecycle_active_days": 180},  # at risk would be empty
        {"lifecycle_at_risk_days": 60},
        {"lifecycle_loyal_orders": 1},  # every customer who ordered would be loyal
        {"lifecycle_new_days": 0},
        {"rfm_refresh_minutes": 0},
    ],
)
def test_settings_refuse_thresholds_that_break_the_stages(values: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        Settings(**values)  # type: ignore[arg-type]
