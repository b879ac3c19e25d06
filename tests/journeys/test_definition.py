"""The journey definition on its own: durations, triggers, entry rules, exit criteria, goal."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from regulars.journeys.definition import (
    MAX_DURATION,
    AnniversaryTrigger,
    Definition,
    Entry,
    EventDateTrigger,
    EventTrigger,
    ExitCriterion,
    ExitOnEvent,
    ExitOnSegment,
    Goal,
    Reentry,
    ScheduleTrigger,
    Trigger,
    parse_duration,
)

TRIGGER: TypeAdapter[Any] = TypeAdapter(Trigger)
EXIT: TypeAdapter[Any] = TypeAdapter(ExitCriterion)


def error_of(exc: pytest.ExceptionInfo[ValidationError]) -> tuple[tuple[int | str, ...], str]:
    """The location and message of the only error."""
    errors = exc.value.errors(include_url=False)
    assert len(errors) == 1, errors
    return tuple(errors[0]["loc"]), errors[0]["msg"]


def minimal(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "trigger": {"type": "api"},
        "start": "end",
        "nodes": {"end": {"type": "exit"}},
    }
    raw.update(overrides)
    return raw


# --- durations ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("24h", timedelta(days=1)),
        ("3d", timedelta(days=3)),
        ("2w", timedelta(days=14)),
        ("0s", timedelta(0)),
        (" 3 d ", timedelta(days=3)),
        ("999999s", timedelta(seconds=999_999)),
        ("3660d", timedelta(days=3660)),  # the limit itself is allowed
        ("87840h", timedelta(days=3660)),
    ],
)
def test_durations_are_a_number_and_a_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "3", "d", "1.5h", "3D", "5y", "-3d", "+3d", "3d4h", "three days", "1000000s"],
)
def test_a_duration_not_written_as_number_and_unit_says_the_accepted_form(text: str) -> None:
    with pytest.raises(ValueError, match="write a number and a unit s, m, h, d or w") as exc:
        parse_duration(text)
    assert repr(text) in str(exc.value)


@pytest.mark.parametrize("text", ["3661d", "523w", "87841h"])
def test_a_duration_over_ten_years_is_refused(text: str) -> None:
    assert timedelta(days=3661) > MAX_DURATION
    with pytest.raises(ValueError, match="is over ten years"):
        parse_duration(text)


# --- triggers ---


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        ("-24h", -timedelta(hours=24)),
        ("+2d", timedelta(days=2)),
        ("30m", timedelta(minutes=30)),
        (" -90s ", -timedelta(seconds=90)),
        ("-0s", timedelta(0)),
    ],
)
def test_event_date_offsets_are_signed_durations(offset: str, expected: timedelta) -> None:
    trigger = TRIGGER.validate_python(
        {"type": "event_date", "event": "Appointment Booked", "property": "start", "offset": offset}
    )
    assert isinstance(trigger, EventDateTrigger)
    assert trigger.offset_delta() == expected


def test_event_date_offset_defaults_to_the_moment_itself() -> None:
    trigger = EventDateTrigger.model_validate({"type": "event_date", "event": "Renewal Due"})
    assert trigger.offset_delta() == timedelta(0)
    assert trigger.property is None
    assert trigger.skip_past is False


@pytest.mark.parametrize("offset", ["--1h", "+-1h", "-+1h", "-1y", "soon", "- 3x"])
def test_event_date_offset_must_be_one_sign_and_a_duration(offset: str) -> None:
    with pytest.raises(ValidationError) as exc:
        EventDateTrigger.model_validate({"type": "event_date", "event": "E", "offset": offset})
    loc, message = error_of(exc)
    assert loc == ("offset",)
    assert "duration" in message


def test_the_trigger_union_picks_the_model_by_type() -> None:
    assert isinstance(
        TRIGGER.validate_python({"type": "event", "event": "Signed Up"}), EventTrigger
    )
    anniversary = TRIGGER.validate_python({"type": "anniversary", "trait": "birthday"})
    assert isinstance(anniversary, AnniversaryTrigger)
    assert anniversary.at == time(9, 0)
    with pytest.raises(ValidationError):
        TRIGGER.validate_python({"type": "webhook", "url": "https://example.com"})


@pytest.mark.parametrize(("days", "ok"), [(0, True), (60, True), (-1, False), (61, False)])
def test_an_anniversary_starts_on_the_day_or_up_to_sixty_days_before(days: int, ok: bool) -> None:
    raw = {"type": "anniversary", "trait": "birthday", "days_before": days}
    if ok:
        assert AnniversaryTrigger.model_validate(raw).days_before == days
    else:
        with pytest.raises(ValidationError) as exc:
            AnniversaryTrigger.model_validate(raw)
        loc, _ = error_of(exc)
        assert loc == ("days_before",)


@pytest.mark.parametrize(
    ("trait", "ok"),
    [
        ("birthday", True),
        ("dates.wedding day", True),
        ("", False),
        ("dates..wedding", False),
        ("birthday.", False),
        ("birth/day", False),
    ],
)
def test_an_anniversary_trait_is_a_dotted_name(trait: str, ok: bool) -> None:
    raw = {"type": "anniversary", "trait": trait}
    if ok:
        assert AnniversaryTrigger.model_validate(raw).trait == trait
    else:
        with pytest.raises(ValidationError):
            AnniversaryTrigger.model_validate(raw)


def test_a_schedule_at_a_moment_keeps_its_offset() -> None:
    trigger = ScheduleTrigger.model_validate(
        {"type": "schedule", "segment": "vip", "at": "2026-12-01T09:00:00+01:00"}
    )
    assert trigger.at == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert trigger.daily_at is None


def test_a_daily_schedule_takes_a_time_and_an_iana_zone() -> None:
    trigger = ScheduleTrigger.model_validate(
        {"type": "schedule", "segment": "vip", "daily_at": "07:30", "timezone": "Europe/Berlin"}
    )
    assert trigger.daily_at == time(7, 30)
    assert trigger.timezone == "Europe/Berlin"


@pytest.mark.parametrize(
    "moments",
    [{}, {"at": "2026-12-01T09:00:00+01:00", "daily_at": "09:00"}],
    ids=["neither", "both"],
)
def test_a_schedule_needs_exactly_one_of_at_and_daily_at(moments: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as exc:
        ScheduleTrigger.model_validate({"type": "schedule", "segment": "vip", **moments})
    _, message = error_of(exc)
    assert "give exactly one of at (a date and time) or daily_at (HH:MM)" in message


def test_a_schedule_at_without_a_zone_offset_is_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        ScheduleTrigger.model_validate(
            {"type": "schedule", "segment": "vip", "at": "2026-12-01T09:00:00"}
        )
    _, message = error_of(exc)
    assert "at needs a time zone offset" in message


@pytest.mark.parametrize("zone", ["Europe/Berln", "CET+1", "Mars/Olympus_Mons", "../etc/passwd"])
def test_a_schedule_zone_must_be_an_iana_name(zone: str) -> None:
    with pytest.raises(ValidationError) as exc:
        ScheduleTrigger.model_validate(
            {"type": "schedule", "segment": "vip", "daily_at": "09:00", "timezone": zone}
        )
    _, message = error_of(exc)
    assert f"unknown time zone {zone!r}" in message


# --- entry ---


def test_entry_defaults_to_again_after_exit_one_run_at_a_time() -> None:
    entry = Entry()
    assert entry.reentry is Reentry.AFTER_EXIT
    assert entry.min_interval is None
    assert entry.concurrent_runs == 1


@pytest.mark.parametrize(
    ("raw", "runs"),
    [
        ({"key": "order_id"}, 20),
        ({"key": "order_id", "max_concurrent": 3}, 3),
        ({"max_concurrent": 5}, 5),
        ({}, 1),
    ],
)
def test_a_keyed_entry_allows_one_run_per_key_up_to_twenty_unless_told(
    raw: dict[str, Any], runs: int
) -> None:
    assert Entry.model_validate(raw).concurrent_runs == runs


def test_reentry_interval_takes_a_min_interval() -> None:
    entry = Entry.model_validate({"reentry": "interval", "min_interval": "30d"})
    assert entry.reentry is Reentry.INTERVAL
    assert entry.min_interval == "30d"


@pytest.mark.parametrize(
    "raw",
    [
        {"reentry": "interval"},
        {"reentry": "after_exit", "min_interval": "30d"},
        {"reentry": "never", "min_interval": "30d"},
        {"min_interval": "30d"},
    ],
)
def test_min_interval_goes_with_reentry_interval_only(raw: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as exc:
        Entry.model_validate(raw)
    _, message = error_of(exc)
    assert "min_interval goes with reentry 'interval', and only with it" in message


def test_a_min_interval_must_be_a_duration() -> None:
    with pytest.raises(ValidationError) as exc:
        Entry.model_validate({"reentry": "interval", "min_interval": "a month"})
    _, message = error_of(exc)
    assert "duration 'a month'" in message


@pytest.mark.parametrize(("concurrent", "ok"), [(1, True), (100, True), (0, False), (101, False)])
def test_max_concurrent_runs_is_between_1_and_100(concurrent: int, ok: bool) -> None:
    if ok:
        assert Entry(max_concurrent=concurrent).max_concurrent == concurrent
    else:
        with pytest.raises(ValidationError):
            Entry(max_concurrent=concurrent)


# --- exit criteria and goal ---


def test_exit_criteria_pick_their_model_by_type() -> None:
    on_event = EXIT.validate_python(
        {"type": "event", "event": "Order Paid", "match": ["order_id"], "where": {"total": 10}}
    )
    assert isinstance(on_event, ExitOnEvent)
    assert on_event.match == ["order_id"]
    on_segment = EXIT.validate_python({"type": "segment", "segment": "customers"})
    assert isinstance(on_segment, ExitOnSegment)
    assert on_segment.on == "exited"


def test_a_goal_counts_revenue_within_a_week_by_default() -> None:
    goal = Goal(event="Order Completed")
    assert goal.within == "7d"
    assert goal.value == "revenue"


def test_a_goal_window_must_be_a_duration() -> None:
    with pytest.raises(ValidationError) as exc:
        Goal.model_validate({"event": "Order Completed", "within": "a fortnight"})
    loc, message = error_of(exc)
    assert loc == ("within",)
    assert "duration 'a fortnight'" in message


# --- the definition as a whole ---


def test_a_minimal_definition_fills_in_the_defaults() -> None:
    definition = Definition.model_validate(minimal())
    assert definition.entry == Entry()
    assert definition.exit == []
    assert definition.goal is None
    assert definition.nodes == {"end": {"type": "exit"}}


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        (minimal(colour="red"), ("colour",)),
        (minimal(entry={"reentry": "never", "colour": "red"}), ("entry", "colour")),
        (minimal(goal={"event": "Order Completed", "colour": "red"}), ("goal", "colour")),
        (minimal(trigger={"type": "api", "colour": "red"}), ("trigger", "api", "colour")),
        (
            minimal(exit=[{"type": "segment", "segment": "vip", "colour": "red"}]),
            ("exit", 0, "segment", "colour"),
        ),
    ],
)
def test_unknown_fields_are_refused_where_they_are(
    raw: dict[str, Any], loc: tuple[int | str, ...]
) -> None:
    with pytest.raises(ValidationError) as exc:
        Definition.model_validate(raw)
    error = exc.value.errors()[0]
    assert len(exc.value.errors()) == 1
    assert error["type"] == "extra_forbidden"
    assert tuple(error["loc"]) == loc


def test_a_definition_needs_at_least_one_node() -> None:
    with pytest.raises(ValidationError) as exc:
        Definition.model_validate(minimal(nodes={}))
    loc, _ = error_of(exc)
    assert loc == ("nodes",)


@pytest.mark.parametrize("node_id", ["with space", "dot.ted", "", "x" * 65])
def test_node_ids_are_short_plain_names(node_id: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Definition.model_validate(minimal(nodes={node_id: {"type": "exit"}}))
    loc, _ = error_of(exc)
    assert loc[:2] == ("nodes", node_id)


def test_a_definition_is_frozen() -> None:
    definition = Definition.model_validate(minimal())
    with pytest.raises(ValidationError):
        definition.start = "elsewhere"  # type: ignore[misc]
