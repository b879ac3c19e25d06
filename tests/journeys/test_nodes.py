"""What each node kind does with a run: pure steps, built from explicit moments."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from regulars.journeys.nodes import (
    Branch,
    CallWebhook,
    Delay,
    Emit,
    EmitEvent,
    Exit,
    Holdout,
    Observed,
    RunView,
    Send,
    SendMessage,
    SetTraits,
    Split,
    UpdateTraits,
    Wait,
    Webhook,
    Weekday,
    bucket,
    fill,
    matches,
    next_window,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
UTC_ZONE = ZoneInfo("UTC")
NOTHING = Observed()
ALL_DAYS = set(Weekday)
WORKDAYS = {Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI}
RUNS = 20_000


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def run_at(
    arrived_at: datetime,
    *,
    zone: ZoneInfo = UTC_ZONE,
    run_id: str = "run-1",
    node_id: str = "here",
    trigger: dict[str, Any] | None = None,
) -> RunView:
    return RunView(
        id=run_id,
        customer_id="cus-1",
        node_id=node_id,
        arrived_at=arrived_at,
        zone=zone,
        trigger=trigger or {},
    )


def delay(**body: Any) -> Delay:
    return Delay.model_validate({"type": "delay", "next": "after", **body})


def five_sigma(n: int, p: float) -> float:
    """Five standard deviations of a binomial count: a fair draw strays further about once in
    1.7 million tries, while a wrong mapping (a percent off by one point is 200 runs in 20,000)
    does not hide inside it."""
    return 5 * math.sqrt(n * p * (1 - p))


# --- delay: a duration ---


def test_a_delay_not_yet_due_waits_until_arrival_plus_duration() -> None:
    arrived = utc(2026, 5, 4, 10)
    step = delay(duration="3d").step(run_at(arrived), NOTHING, arrived + timedelta(hours=1))
    assert step.waits
    assert step.wait_until == utc(2026, 5, 7, 10)
    assert step.next_node == "after"
    assert step.effects == ()


@pytest.mark.parametrize("late", [timedelta(0), timedelta(minutes=5)])
def test_a_delay_that_is_due_moves_on_without_waiting(late: timedelta) -> None:
    arrived = utc(2026, 5, 4, 10)
    now = utc(2026, 5, 7, 10) + late
    step = delay(duration="3d").step(run_at(arrived), NOTHING, now)
    assert not step.waits
    assert step.wait_until is None
    assert step.outcome == "next"
    assert step.next_node == "after"


# --- delay: a time of day in the customer's zone ---


def test_a_delay_at_nine_crosses_the_spring_clock_change_in_local_time() -> None:
    # Saturday 21:00 in Berlin (CET, +1); clocks go to CEST (+2) that night.
    arrived = utc(2026, 3, 28, 20)
    until = delay(at="09:00").until(arrived, BERLIN)
    assert until == utc(2026, 3, 29, 7)  # Sunday 09:00 CEST


def test_a_delay_at_nine_in_winter_is_eight_utc_the_same_morning() -> None:
    arrived = utc(2026, 1, 10, 7, 30)  # 08:30 CET
    assert delay(at="09:00").until(arrived, BERLIN) == utc(2026, 1, 10, 8)


def test_a_delay_at_a_time_already_past_today_waits_for_tomorrow() -> None:
    arrived = utc(2026, 1, 10, 8, 30)  # 09:30 CET
    assert delay(at="09:00").until(arrived, BERLIN) == utc(2026, 1, 11, 8)


def test_a_delay_arriving_exactly_at_the_time_moves_on_at_once() -> None:
    arrived = utc(2026, 1, 10, 8)  # 09:00 CET
    step = delay(at="09:00").step(run_at(arrived, zone=BERLIN), NOTHING, arrived)
    assert not step.waits
    assert step.next_node == "after"


def test_a_delay_on_workdays_skips_the_weekend() -> None:
    # Friday 2026-03-06 18:00 in New York (EST, -5); US clocks change on Sunday 2026-03-08.
    arrived = utc(2026, 3, 6, 23)
    assert date(2026, 3, 6).weekday() == 4
    node = delay(at="09:00", weekdays=["mon", "tue", "wed", "thu", "fri"])
    step = node.step(run_at(arrived, zone=NEW_YORK), NOTHING, arrived)
    assert step.wait_until == utc(2026, 3, 9, 13)  # Monday 09:00 EDT (-4)


def test_a_delay_on_one_weekday_waits_up_to_a_week() -> None:
    arrived = utc(2026, 5, 4, 10)  # Monday 10:00 UTC, after today's 09:00
    assert delay(at="09:00", weekdays=["mon"]).until(arrived, UTC_ZONE) == utc(2026, 5, 11, 9)


def test_the_fold_hour_of_autumn_is_not_mistaken_for_the_past() -> None:
    # Berlin 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00 UTC, so 02:45 comes twice.
    first_pass = utc(2026, 10, 25, 0, 40)  # 02:40 CEST
    second_pass = utc(2026, 10, 25, 1, 40)  # 02:40 CET
    assert next_window(first_pass, BERLIN, time(2, 45), None, ALL_DAYS) == utc(2026, 10, 25, 0, 45)
    found = next_window(second_pass, BERLIN, time(2, 45), None, ALL_DAYS)
    assert found >= second_pass
    assert found == utc(2026, 10, 25, 1, 45)


# --- delay: a window ---


@pytest.mark.parametrize(
    ("arrived", "expected"),
    [
        (utc(2026, 5, 4, 7), utc(2026, 5, 4, 9)),  # before: today's opening
        (utc(2026, 5, 4, 9), utc(2026, 5, 4, 9)),  # the opening minute is inside
        (utc(2026, 5, 4, 12, 30), utc(2026, 5, 4, 12, 30)),  # inside: at once
        (utc(2026, 5, 4, 17), utc(2026, 5, 5, 9)),  # the closing minute is outside
        (utc(2026, 5, 4, 18), utc(2026, 5, 5, 9)),  # after: tomorrow's opening
    ],
)
def test_a_daytime_window(arrived: datetime, expected: datetime) -> None:
    assert delay(between=["09:00", "17:00"]).until(arrived, UTC_ZONE) == expected


@pytest.mark.parametrize(
    ("arrived", "expected"),
    [
        (utc(2026, 5, 4, 20), utc(2026, 5, 4, 22)),
        (utc(2026, 5, 4, 22), utc(2026, 5, 4, 22)),
        (utc(2026, 5, 4, 23, 30), utc(2026, 5, 4, 23, 30)),
        (utc(2026, 5, 5, 3), utc(2026, 5, 5, 3)),  # after midnight, still inside
        (utc(2026, 5, 5, 6), utc(2026, 5, 5, 22)),
        (utc(2026, 5, 5, 12), utc(2026, 5, 5, 22)),
    ],
)
def test_a_night_window_spans_midnight(arrived: datetime, expected: datetime) -> None:
    assert delay(between=["22:00", "06:00"]).until(arrived, UTC_ZONE) == expected


@pytest.mark.parametrize(
    ("arrived", "expected"),
    [
        # Saturday 02:00: inside the window that opened on Friday night, an allowed day.
        (utc(2026, 5, 9, 2), utc(2026, 5, 9, 2)),
        # Sunday 23:00 and Monday 02:00: inside windows opened on Sunday, not allowed.
        (utc(2026, 5, 10, 23), utc(2026, 5, 11, 22)),
        (utc(2026, 5, 11, 2), utc(2026, 5, 11, 22)),
        # Saturday noon: the next window opening on a workday is Monday's.
        (utc(2026, 5, 9, 12), utc(2026, 5, 11, 22)),
    ],
)
def test_a_night_window_belongs_to_the_day_it_opens(arrived: datetime, expected: datetime) -> None:
    node = delay(between=["22:00", "06:00"], weekdays=["mon", "tue", "wed", "thu", "fri"])
    assert node.until(arrived, UTC_ZONE) == expected


def test_a_window_is_read_on_the_customers_clock() -> None:
    arrived = utc(2026, 7, 1, 19, 30)  # 21:30 CEST
    step = delay(between=["22:00", "06:00"]).step(run_at(arrived, zone=BERLIN), NOTHING, arrived)
    assert step.wait_until == utc(2026, 7, 1, 20)
    inside = utc(2026, 7, 1, 21)  # 23:00 CEST
    step = delay(between=["22:00", "06:00"]).step(run_at(inside, zone=BERLIN), NOTHING, inside)
    assert not step.waits
    assert step.next_node == "after"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "give exactly one of duration, at"),
        ({"duration": "1d", "at": "09:00"}, "give exactly one of duration, at"),
        ({"at": "09:00", "between": ["09:00", "17:00"]}, "give exactly one of duration, at"),
        ({"between": ["09:00", "09:00"]}, "between needs two different times"),
        ({"duration": "a day"}, "duration 'a day'"),
        ({"at": "09:00", "weekdays": []}, "at least 1 item"),
        ({"at": "09:00", "weekdays": ["monday"]}, "Input should be"),
    ],
)
def test_a_delay_needs_one_clear_form(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        delay(**body)


# Quarter hours from 04:00: no zone below changes its clocks then, so a walk through the
# instants meets every such local time exactly once a day.
QUARTERS = st.builds(time, st.integers(4, 23), st.sampled_from([0, 15, 30, 45]))
ZONES = st.sampled_from(
    ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
)
START = utc(2025, 1, 1)


def walk_to_window(
    moment: datetime,
    zone: ZoneInfo,
    at: time | None,
    between: tuple[time, time] | None,
    days: set[Weekday],
) -> datetime:
    """The reference: step through the instants a quarter of an hour at a time until the
    customer's clock shows `at`, or is inside `between` on a window opened on an allowed day."""
    weekdays = list(Weekday)
    instant = moment
    for _ in range(8 * 24 * 4 + 1):
        local = instant.astimezone(zone)
        clock = local.time()
        if at is not None:
            if clock == at and weekdays[local.weekday()] in days:
                return instant
        else:
            assert between is not None
            start, end = between
            if start < end:
                inside, opened = start <= clock < end, local.date()
            else:
                inside = clock >= start or clock < end
                opened = local.date() - timedelta(days=1) if clock < end else local.date()
            if inside and weekdays[opened.weekday()] in days:
                return instant
        instant += timedelta(minutes=15)
    raise AssertionError("no window within eight days")


@settings(max_examples=150, deadline=None)
@given(
    quarters=st.integers(0, 4 * 365 * 24 * 4),
    zone_name=ZONES,
    at=QUARTERS,
    days=st.sets(st.sampled_from(list(Weekday)), min_size=1),
)
def test_next_window_at_agrees_with_walking_the_clock(
    quarters: int, zone_name: str, at: time, days: set[Weekday]
) -> None:
    moment, zone = START + timedelta(minutes=15 * quarters), ZoneInfo(zone_name)
    assert next_window(moment, zone, at, None, days) == walk_to_window(moment, zone, at, None, days)


@settings(max_examples=150, deadline=None)
@given(
    quarters=st.integers(0, 4 * 365 * 24 * 4),
    zone_name=ZONES,
    window=st.tuples(QUARTERS, QUARTERS).filter(lambda w: w[0] != w[1]),
    days=st.sets(st.sampled_from(list(Weekday)), min_size=1),
)
def test_next_window_between_agrees_with_walking_the_clock(
    quarters: int, zone_name: str, window: tuple[time, time], days: set[Weekday]
) -> None:
    moment, zone = START + timedelta(minutes=15 * quarters), ZoneInfo(zone_name)
    found = next_window(moment, zone, None, window, days)
    assert found == walk_to_window(moment, zone, None, window, days)


# --- wait ---


def wait(**body: Any) -> Wait:
    return Wait.model_validate(
        {
            "type": "wait",
            "event": "Order Paid",
            "timeout": "2d",
            "next": "thanks",
            "timeout_next": "nudge",
            **body,
        }
    )


def test_a_wait_whose_event_came_goes_to_next() -> None:
    arrived = utc(2026, 5, 4, 10)
    step = wait().step(run_at(arrived), Observed(awaited={"total": 12}), utc(2026, 5, 5, 10))
    assert step.outcome == "event"
    assert step.next_node == "thanks"
    assert not step.waits


def test_a_wait_before_its_deadline_listens_for_the_event() -> None:
    arrived = utc(2026, 5, 4, 10)
    step = wait().step(run_at(arrived), NOTHING, utc(2026, 5, 5, 10))
    assert step.wait_until == utc(2026, 5, 6, 10)
    assert step.listen == "Order Paid"


@pytest.mark.parametrize("late", [timedelta(0), timedelta(hours=3)])
def test_a_wait_at_or_past_its_deadline_times_out(late: timedelta) -> None:
    arrived = utc(2026, 5, 4, 10)
    step = wait().step(run_at(arrived), NOTHING, utc(2026, 5, 6, 10) + late)
    assert step.outcome == "timeout"
    assert step.next_node == "nudge"
    assert not step.waits
    assert step.listen is None


def test_a_wait_without_a_timeout_edge_ends_the_run_as_timed_out() -> None:
    arrived = utc(2026, 5, 4, 10)
    step = wait(timeout_next=None).step(run_at(arrived), NOTHING, utc(2026, 5, 7))
    assert step.next_node is None
    assert not step.waits
    assert step.exit_reason == "timed_out"


def test_a_wait_wants_its_where_and_the_triggers_matched_properties() -> None:
    node = wait(where={"status": "paid"}, match=["order_id", "shipping.country", "coupon"])
    trigger = {"order_id": "o-17", "shipping": {"country": "DE", "city": "Kiel"}}
    assert node.wanted(trigger) == {
        "status": "paid",
        "order_id": "o-17",
        "shipping.country": "DE",
        "coupon": None,  # not in the trigger
    }


def test_a_matched_property_overrides_a_where_of_the_same_name() -> None:
    node = wait(where={"order_id": "fixed"}, match=["order_id"])
    assert node.wanted({"order_id": "o-17"}) == {"order_id": "o-17"}


def test_a_wait_needs_a_timeout_that_is_a_duration() -> None:
    with pytest.raises(ValidationError, match="duration 'forever'"):
        wait(timeout="forever")
    with pytest.raises(ValidationError, match="timeout"):
        Wait.model_validate({"type": "wait", "event": "Order Paid"})


# --- matching event properties ---


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({}, True),
        ({"status": "paid"}, True),
        ({"status": "paid", "shipping.country": "DE"}, True),
        ({"shipping.country": "FR"}, False),
        ({"status": "open"}, False),
        ({"total": 12}, True),
        ({"total": "12"}, False),
        ({"coupon": "X"}, False),
        ({"status.code": "paid"}, False),  # dots through a string find nothing
    ],
)
def test_where_compares_each_property_reaching_in_with_dots(
    where: dict[str, Any], expected: bool
) -> None:
    properties = {"status": "paid", "total": 12, "shipping": {"country": "DE"}}
    assert matches(properties, where) is expected


def test_the_awaited_event_is_matched_against_what_the_wait_wants() -> None:
    node = wait(where={"status": "paid"}, match=["order_id"])
    wanted = node.wanted({"order_id": "o-17"})
    assert matches({"order_id": "o-17", "status": "paid"}, wanted)
    assert not matches({"order_id": "o-18", "status": "paid"}, wanted)
    assert not matches({"order_id": "o-17", "status": "refunded"}, wanted)


# --- branch ---


@pytest.mark.parametrize(
    ("condition", "outcome", "target"),
    [(True, "yes", "vip"), (False, "no", "regular"), (None, "no", "regular")],
)
def test_a_branch_follows_its_condition(condition: bool | None, outcome: str, target: str) -> None:
    node = Branch.model_validate(
        {"type": "branch", "condition": {"type": "segment"}, "yes": "vip", "no": "regular"}
    )
    step = node.step(run_at(utc(2026, 5, 4)), Observed(condition=condition), utc(2026, 5, 4))
    assert (step.outcome, step.next_node) == (outcome, target)
    assert not step.waits
    assert node.successors() == {"yes": "vip", "no": "regular"}


# --- bucket, split and holdout ---


def test_bucket_is_stable_and_in_range() -> None:
    assert bucket("run-1", "ab") == bucket("run-1", "ab")
    values = [bucket(f"run-{i}", "ab") for i in range(RUNS)]
    assert all(0 <= v <= 9999 for v in values)
    tenths = Counter(v // 1000 for v in values)
    assert sorted(tenths) == list(range(10))
    for count in tenths.values():
        assert abs(count - RUNS / 10) <= five_sigma(RUNS, 0.1)


def split(*paths: tuple[str, float]) -> Split:
    return Split.model_validate(
        {
            "type": "split",
            "paths": [{"name": n, "percent": p, "next": f"to_{n}"} for n, p in paths],
        }
    )


def test_a_split_sends_runs_down_paths_by_their_percents() -> None:
    node = split(("a", 50), ("b", 30), ("c", 20))
    now = utc(2026, 5, 4)
    counts: Counter[str] = Counter()
    for i in range(RUNS):
        step = node.step(run_at(now, run_id=f"run-{i}", node_id="ab"), NOTHING, now)
        assert step.variant == step.outcome
        assert step.next_node == f"to_{step.outcome}"
        counts[step.outcome] += 1
    for name, share in [("a", 0.5), ("b", 0.3), ("c", 0.2)]:
        assert abs(counts[name] - RUNS * share) <= five_sigma(RUNS, share), counts


def test_a_split_sends_the_same_run_the_same_way_every_time() -> None:
    node = split(("a", 50), ("b", 50))
    now = utc(2026, 5, 4)
    for i in range(200):
        first = node.step(run_at(now, run_id=f"run-{i}", node_id="ab"), NOTHING, now)
        later = node.step(
            run_at(now + timedelta(days=1), run_id=f"run-{i}", node_id="ab"), NOTHING, now
        )
        assert first == later


def test_two_splits_in_one_journey_draw_independently() -> None:
    node = split(("a", 50), ("b", 50))
    now = utc(2026, 5, 4)
    pairs: Counter[tuple[str, str]] = Counter()
    for i in range(RUNS):
        first = node.step(run_at(now, run_id=f"run-{i}", node_id="split1"), NOTHING, now)
        second = node.step(run_at(now, run_id=f"run-{i}", node_id="split2"), NOTHING, now)
        pairs[(first.outcome, second.outcome)] += 1
    assert len(pairs) == 4
    for count in pairs.values():
        assert abs(count - RUNS / 4) <= five_sigma(RUNS, 0.25), pairs


@st.composite
def whole_percents(draw: st.DrawFn) -> list[int]:
    cuts = draw(st.sets(st.integers(1, 99), min_size=1, max_size=9))
    edges = [0, *sorted(cuts), 100]
    return [b - a for a, b in pairwise(edges)]


@settings(max_examples=200, deadline=None)
@given(percents=whole_percents(), run_id=st.text(min_size=1, max_size=30))
def test_a_split_path_owns_its_own_slice_of_buckets(percents: list[int], run_id: str) -> None:
    node = split(*[(f"p{i}", p) for i, p in enumerate(percents)])
    now = utc(2026, 5, 4)
    drawn = bucket(run_id, "ab")
    # Path i owns the buckets from 100 x (the percents before it) up to its own share on top.
    expected = next(i for i in range(len(percents)) if drawn < 100 * sum(percents[: i + 1]))
    step = node.step(run_at(now, run_id=run_id, node_id="ab"), NOTHING, now)
    assert step.variant == f"p{expected}"


def run_id_in_bucket(wanted: int, node_id: str) -> str:
    for i in range(1_000_000):
        if bucket(f"run-{i}", node_id) == wanted:
            return f"run-{i}"
    raise AssertionError(f"no run id lands in bucket {wanted}")


@pytest.mark.parametrize(
    ("drawn", "path"), [(0, "a"), (4999, "a"), (5000, "b"), (7999, "b"), (8000, "c"), (9999, "c")]
)
def test_the_buckets_on_a_split_edge_go_to_the_path_above_it(drawn: int, path: str) -> None:
    # 50/30/20: a owns buckets 0-4999, b 5000-7999, c 8000-9999.
    node = split(("a", 50), ("b", 30), ("c", 20))
    now = utc(2026, 5, 4)
    run = run_at(now, run_id=run_id_in_bucket(drawn, "ab"), node_id="ab")
    assert node.step(run, NOTHING, now).variant == path


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        ([("a", 50), ("b", 40)], "must add up to 100"),
        ([("a", 50), ("b", 50.5)], "must add up to 100"),
        ([("a", 50), ("a", 50)], "each path needs its own name"),
        ([("a", 100)], "at least 2 items"),
        ([("a", 100), ("b", 0)], "greater than 0"),
    ],
)
def test_a_split_needs_named_paths_adding_up_to_a_hundred(
    paths: list[tuple[str, float]], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        split(*paths)


def test_a_split_with_thirds_puts_every_run_somewhere() -> None:
    node = split(("a", 33.33), ("b", 33.33), ("c", 33.34))
    now = utc(2026, 5, 4)
    seen = {
        node.step(run_at(now, run_id=f"run-{i}", node_id="ab"), NOTHING, now).outcome
        for i in range(2000)
    }
    assert seen == {"a", "b", "c"}
    assert node.successors() == {"paths.a": "to_a", "paths.b": "to_b", "paths.c": "to_c"}


def test_a_holdout_keeps_about_its_percent_as_control() -> None:
    node = Holdout.model_validate({"type": "holdout", "percent": 10, "next": "offer"})
    now = utc(2026, 5, 4)
    control = 0
    for i in range(RUNS):
        run = run_at(now, run_id=f"run-{i}", node_id="hold")
        step = node.step(run, NOTHING, now)
        in_control = bucket(run.id, "hold") < 1000
        if step.outcome == "control":
            control += 1
            assert (step.next_node, step.variant, step.exit_reason) == (
                None,
                "control",
                "holdout",
            )
        else:
            assert step.outcome == "treatment"
            assert (step.next_node, step.variant, step.exit_reason) == (
                "offer",
                "treatment",
                "completed",
            )
        assert (step.outcome == "control") is in_control
        assert step.effects == ()
    assert abs(control - RUNS * 0.1) <= five_sigma(RUNS, 0.1)


@pytest.mark.parametrize("percent", [0, 100, -5])
def test_a_holdout_keeps_some_but_not_all(percent: float) -> None:
    with pytest.raises(ValidationError):
        Holdout.model_validate({"type": "holdout", "percent": percent})


# --- send ---


def test_send_on_auto_leaves_the_channel_to_the_customers_preference() -> None:
    node = Send.model_validate({"type": "send", "template": "welcome", "next": "pause"})
    step = node.step(run_at(utc(2026, 5, 4)), NOTHING, utc(2026, 5, 4))
    assert step.effects == (SendMessage(template="welcome", channel=None, category=None),)
    assert (step.outcome, step.next_node) == ("next", "pause")


def test_send_on_a_named_channel_keeps_it_and_the_category() -> None:
    node = Send.model_validate(
        {"type": "send", "template": "sale", "channel": "sms", "category": "marketing"}
    )
    step = node.step(run_at(utc(2026, 5, 4)), NOTHING, utc(2026, 5, 4))
    assert step.effects == (SendMessage(template="sale", channel="sms", category="marketing"),)
    assert step.next_node is None


@pytest.mark.parametrize(
    "body", [{"channel": "fax"}, {"category": "spam"}, {"template": ""}, {"colour": "red"}]
)
def test_send_refuses_unknown_channels_categories_and_fields(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Send.model_validate({"type": "send", "template": "welcome", **body})


# --- filling placeholders ---


TRIGGER = {"plan": "pro", "order": {"id": 42, "items": ["a", "b"]}, "tag": "vip", "zero": 0}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{{ trigger.plan }}", "pro"),
        ("{{trigger.plan}}", "pro"),
        ("{{ trigger.order.id }}", 42),
        ("{{ trigger.order }}", {"id": 42, "items": ["a", "b"]}),
        ("{{ trigger.zero }}", 0),
        ("{{ trigger.missing }}", None),
        ("{{ trigger.plan.name }}", None),  # dots through a string find nothing
        ("Plan: {{ trigger.plan }}", "Plan: {{ trigger.plan }}"),  # whole strings only
        ("{{ trigger.plan }}!", "{{ trigger.plan }}!"),
        ("{{ customer.plan }}", "{{ customer.plan }}"),
        ("plain", "plain"),
        (7, 7),
        (None, None),
        (True, True),
    ],
)
def test_fill_replaces_whole_string_placeholders(value: Any, expected: Any) -> None:
    assert fill(value, TRIGGER) == expected


def test_fill_reaches_into_dicts_and_lists() -> None:
    value = {
        "last_order": {"id": "{{ trigger.order.id }}", "tags": ["{{ trigger.tag }}", "fixed"]},
        "nothing": "{{ trigger.nope }}",
        "count": 3,
    }
    assert fill(value, TRIGGER) == {
        "last_order": {"id": 42, "tags": ["vip", "fixed"]},
        "nothing": None,
        "count": 3,
    }


def test_update_traits_sets_filled_traits() -> None:
    node = UpdateTraits.model_validate(
        {
            "type": "update_traits",
            "traits": {"plan": "{{ trigger.plan }}", "source": "journey"},
            "next": "thanks",
        }
    )
    step = node.step(run_at(utc(2026, 5, 4), trigger=TRIGGER), NOTHING, utc(2026, 5, 4))
    assert step.effects == (SetTraits(traits={"plan": "pro", "source": "journey"}),)
    assert step.next_node == "thanks"
    with pytest.raises(ValidationError):
        UpdateTraits.model_validate({"type": "update_traits", "traits": {}})


def test_emit_puts_a_filled_event_on_the_timeline() -> None:
    node = Emit.model_validate(
        {
            "type": "emit",
            "event": "Journey Reward Earned",
            "properties": {"order": "{{ trigger.order.id }}", "items": "{{ trigger.order.items }}"},
        }
    )
    step = node.step(run_at(utc(2026, 5, 4), trigger=TRIGGER), NOTHING, utc(2026, 5, 4))
    assert step.effects == (
        EmitEvent(event="Journey Reward Earned", properties={"order": 42, "items": ["a", "b"]}),
    )
    assert step.next_node is None


def test_webhook_posts_a_filled_body() -> None:
    node = Webhook.model_validate(
        {
            "type": "webhook",
            "url": "https://crm.example.com/hooks/regulars",
            "body": {"deal": {"plan": "{{ trigger.plan }}", "lost": "{{ trigger.lost }}"}},
            "next": "end",
        }
    )
    step = node.step(run_at(utc(2026, 5, 4), trigger=TRIGGER), NOTHING, utc(2026, 5, 4))
    assert step.effects == (
        CallWebhook(
            url="https://crm.example.com/hooks/regulars",
            body={"deal": {"plan": "pro", "lost": None}},
        ),
    )
    assert step.next_node == "end"


@pytest.mark.parametrize("url", ["ftp://example.com", "example.com/hook", "javascript:alert(1)"])
def test_webhook_urls_are_http(url: str) -> None:
    with pytest.raises(ValidationError):
        Webhook.model_validate({"type": "webhook", "url": url})


def test_filling_does_not_change_the_node() -> None:
    node = Emit.model_validate(
        {"type": "emit", "event": "E", "properties": {"p": "{{ trigger.plan }}"}}
    )
    node.step(run_at(utc(2026, 5, 4), trigger=TRIGGER), NOTHING, utc(2026, 5, 4))
    assert node.properties == {"p": "{{ trigger.plan }}"}


# --- exit and edges ---


def test_exit_ends_the_run() -> None:
    node = Exit.model_validate({"type": "exit"})
    step = node.step(run_at(utc(2026, 5, 4)), NOTHING, utc(2026, 5, 4))
    assert (step.outcome, step.next_node, step.exit_reason) == ("exit", None, "completed")
    assert not step.waits
    assert step.effects == ()
    assert node.successors() == {}


def test_successors_leave_out_missing_edges() -> None:
    assert wait(timeout_next=None).successors() == {"next": "thanks"}
    assert wait().successors() == {"next": "thanks", "timeout_next": "nudge"}
    assert delay(duration="1d", next=None).successors() == {}


def test_only_delays_that_hold_every_run_and_waits_break_a_loop() -> None:
    assert delay(duration="1d").always_waits()
    assert not delay(duration="0s").always_waits()
    assert delay(duration=None, at="09:00").always_waits()
    assert not delay(duration=None, between=["09:00", "17:00"]).always_waits()
    assert wait().always_waits()
    assert not wait(timeout="0s").always_waits()
    assert not Send(type="send", template="t").always_waits()
    assert not Exit(type="exit").always_waits()


def test_a_true_property_does_not_match_one() -> None:
    assert matches({"paid": True}, {"paid": True})
    assert not matches({"paid": 1}, {"paid": True})
    assert not matches({"count": True}, {"count": 1})
    assert matches({"count": 1.0}, {"count": 1})
