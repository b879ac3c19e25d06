"""Delivery policies: each policy, their order, caps, quiet hours across DST, choose_channel."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regulars.messages.models import Category, MessageChannel
from regulars.messages.policy import (
    Cap,
    PolicyInput,
    QuietHours,
    Verdict,
    VerdictKind,
    choose_channel,
    decide,
    longest_window,
    next_allowed_moment,
    parse_caps,
    resolve_zone,
)

EMAIL, SMS, WHATSAPP = MessageChannel.EMAIL, MessageChannel.SMS, MessageChannel.WHATSAPP
PUSH, INAPP, WEBHOOK = MessageChannel.PUSH, MessageChannel.INAPP, MessageChannel.WEBHOOK
NOON = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)  # 12:00 in Berlin (CEST, UTC+2)
EVENING = datetime(2026, 6, 10, 20, 30, tzinfo=UTC)  # 22:30 in Berlin
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
NIGHT = QuietHours(
    start=time(21, 0),
    end=time(8, 0),
    channels=frozenset({SMS, WHATSAPP, PUSH}),
    transactional=False,
)
BASE = PolicyInput(
    category=Category.MARKETING,
    channel=EMAIL,
    topic="",
    now=NOON,
    expires_at=None,
    timezone="Europe/Berlin",
    consents={(channel, ""): "subscribed" for channel in ("email", "sms", "whatsapp", "push")},
    suppressed_reason=None,
    address="ada@example.com",
    paused_until=None,
    recent_marketing=(),
    caps=(),
    quiet=NIGHT,
    default_timezone="UTC",
)


def facts(**changes: Any) -> PolicyInput:
    return replace(BASE, **changes)


def outcome(**changes: Any) -> tuple[str, str | None]:
    verdict = decide(facts(**changes))
    return verdict.kind, verdict.reason


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- expiry ---


def test_message_at_or_past_its_expiry_is_refused() -> None:
    assert decide(facts(expires_at=NOON)) == Verdict(
        VerdictKind.REFUSE, "expired", "expired at 2026-06-10 10:00 UTC"
    )
    assert outcome(expires_at=NOON + timedelta(minutes=1)) == ("send", None)


# --- suppression ---


def test_suppressed_address_is_refused_with_its_reason() -> None:
    assert decide(facts(suppressed_reason="hard_bounce")) == Verdict(
        VerdictKind.REFUSE,
        "suppressed:hard_bounce",
        "the email address is suppressed (hard_bounce)",
    )


def test_transactional_message_to_suppressed_address_is_refused() -> None:
    changes = {"category": Category.TRANSACTIONAL, "channel": SMS, "suppressed_reason": "stop"}
    assert outcome(**changes) == ("refuse", "suppressed:stop")


# --- consent ---


def test_marketing_to_subscribed_customer_is_sent() -> None:
    assert decide(BASE) == Verdict(VerdictKind.SEND, None, None, None)


@pytest.mark.parametrize(
    ("consents", "reason"),
    [
        ({}, "no_consent"),
        ({("email", ""): "unknown"}, "no_consent"),
        ({("email", ""): "unsubscribed"}, "unsubscribed"),
        ({("sms", ""): "subscribed"}, "no_consent"),
    ],
)
def test_marketing_needs_the_channel_subscribed(
    consents: dict[tuple[str, str], str], reason: str
) -> None:
    assert outcome(consents=consents) == ("refuse", reason)


def test_unsubscribed_topic_blocks_marketing_on_that_topic_only() -> None:
    consents = {("email", ""): "subscribed", ("email", "offers"): "unsubscribed"}
    assert decide(facts(consents=consents, topic="offers")) == Verdict(
        VerdictKind.REFUSE,
        "topic_unsubscribed",
        "the customer unsubscribed from email messages about 'offers'",
    )
    assert outcome(consents=consents, topic="news") == ("send", None)
    assert outcome(consents=consents, topic="") == ("send", None)


def test_topic_never_set_follows_the_channel() -> None:
    assert outcome(topic="offers", consents={("email", ""): "subscribed"}) == ("send", None)
    unsubscribed = {("email", ""): "unsubscribed"}
    assert outcome(topic="offers", consents=unsubscribed) == ("refuse", "unsubscribed")


def test_topic_subscription_does_not_stand_in_for_the_channel() -> None:
    consents = {("email", "offers"): "subscribed"}
    assert outcome(topic="offers", consents=consents) == ("refuse", "no_consent")


def test_topic_unsubscribed_on_another_channel_does_not_block() -> None:
    consents = {("email", ""): "subscribed", ("sms", "offers"): "unsubscribed"}
    assert outcome(topic="offers", consents=consents) == ("send", None)


def test_transactional_is_sent_without_marketing_consent() -> None:
    consents = {("email", ""): "unsubscribed", ("email", "orders"): "unsubscribed"}
    changes = {"category": Category.TRANSACTIONAL, "topic": "orders", "consents": consents}
    assert outcome(**changes) == ("send", None)
    assert outcome(**{**changes, "category": Category.MARKETING}) == ("refuse", "unsubscribed")


@pytest.mark.parametrize("channel", [INAPP, WEBHOOK])
def test_inapp_and_webhook_marketing_need_no_consent_and_no_address(
    channel: MessageChannel,
) -> None:
    assert outcome(channel=channel, consents={}, address=None) == ("send", None)


def test_paused_customer_gets_no_marketing_until_the_pause_ends() -> None:
    until = NOON + timedelta(hours=1)
    assert decide(facts(paused_until=until)) == Verdict(
        VerdictKind.REFUSE, "paused", "marketing paused until 2026-06-10 11:00 UTC"
    )
    assert outcome(paused_until=until, channel=INAPP) == ("refuse", "paused")
    assert outcome(paused_until=NOON) == ("send", None)


def test_pause_does_not_hold_transactional_messages() -> None:
    changes = {"paused_until": NOON + timedelta(days=3), "category": Category.TRANSACTIONAL}
    assert outcome(**changes) == ("send", None)


# --- reachability ---


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        (EMAIL, "the customer has no email address"),
        (SMS, "the customer has no phone number"),
        (WHATSAPP, "the customer has no phone number"),
        (PUSH, "the customer has no push subscription"),
    ],
)
def test_channel_without_address_is_unreachable(channel: MessageChannel, message: str) -> None:
    assert decide(facts(channel=channel, address=None)) == Verdict(
        VerdictKind.REFUSE, "unreachable", message
    )


def test_empty_address_is_unreachable_for_transactional_too() -> None:
    changes = {"address": "", "category": Category.TRANSACTIONAL}
    assert outcome(**changes) == ("refuse", "unreachable")


# --- frequency caps ---


def emails(*ages: timedelta) -> list[tuple[MessageChannel, datetime]]:
    return [(EMAIL, NOON - age) for age in ages]


DAYS_1_3_6 = (timedelta(days=1), timedelta(days=3), timedelta(days=6, hours=23))


def test_email_cap_refuses_once_the_cap_is_reached() -> None:
    caps = parse_caps(["email:3/7d"])
    assert decide(facts(caps=caps, recent_marketing=emails(*DAYS_1_3_6))) == Verdict(
        VerdictKind.REFUSE,
        "frequency_cap",
        "3 email messages in the last 7 days (cap email:3/7d)",
    )
    assert outcome(caps=caps, recent_marketing=emails(*DAYS_1_3_6[:2])) == ("send", None)


def test_a_message_exactly_a_window_old_no_longer_counts() -> None:
    caps = parse_caps(["email:3/7d"])
    two = (timedelta(days=1), timedelta(days=2))
    window_old = emails(*two, timedelta(days=7))
    assert outcome(caps=caps, recent_marketing=window_old) == ("send", None)
    minute_younger = emails(*two, timedelta(days=7) - timedelta(minutes=1))
    assert outcome(caps=caps, recent_marketing=minute_younger) == ("refuse", "frequency_cap")


def test_channel_cap_counts_and_holds_only_its_channel() -> None:
    caps = parse_caps(["email:3/7d"])
    texts = [(SMS, NOON - timedelta(hours=h)) for h in (1, 2, 3)]
    assert outcome(caps=caps, recent_marketing=texts + emails(*DAYS_1_3_6[:2])) == ("send", None)
    three_emails = emails(*DAYS_1_3_6)
    assert outcome(caps=caps, recent_marketing=three_emails, channel=SMS) == ("send", None)


def test_all_cap_counts_every_channel() -> None:
    caps = parse_caps(["all:6/7d"])
    recent = [*emails(*DAYS_1_3_6[:2]), (SMS, NOON - timedelta(days=1)), (SMS, NOON)]
    recent += [(PUSH, NOON - timedelta(days=5)), (INAPP, NOON - timedelta(days=2))]
    assert decide(facts(caps=caps, recent_marketing=recent)) == Verdict(
        VerdictKind.REFUSE,
        "frequency_cap",
        "6 messages on all channels in the last 7 days (cap all:6/7d)",
    )
    assert outcome(caps=caps, recent_marketing=recent, channel=INAPP) == ("refuse", "frequency_cap")
    assert outcome(caps=caps, recent_marketing=recent[1:]) == ("send", None)


def test_first_cap_reached_is_the_one_reported() -> None:
    caps = parse_caps(["push:3/1d", "all:4/7d"])
    recent = [(PUSH, NOON - timedelta(hours=h)) for h in (1, 5, 23)] + emails(timedelta(days=2))
    verdict = decide(facts(channel=PUSH, caps=caps, recent_marketing=recent))
    assert verdict.message == "3 push messages in the last day (cap push:3/1d)"
    verdict = decide(facts(channel=SMS, caps=caps, recent_marketing=recent))
    assert verdict.message == "4 messages on all channels in the last 7 days (cap all:4/7d)"


def test_hours_window_counts_only_the_last_hours() -> None:
    caps = parse_caps(["sms:2/24h"])
    recent = [(SMS, NOON - timedelta(hours=23)), (SMS, NOON - timedelta(hours=25))]
    assert outcome(channel=SMS, caps=caps, recent_marketing=recent) == ("send", None)
    recent.append((SMS, NOON - timedelta(minutes=5)))
    assert decide(facts(channel=SMS, caps=caps, recent_marketing=recent)).message == (
        "2 sms messages in the last 24 hours (cap sms:2/24h)"
    )


def test_transactional_ignores_frequency_caps() -> None:
    changes = {"caps": parse_caps(["email:1/7d"]), "recent_marketing": emails(timedelta(hours=1))}
    assert outcome(**changes, category=Category.TRANSACTIONAL) == ("send", None)
    assert outcome(**changes) == ("refuse", "frequency_cap")


def test_parse_caps_reads_channel_count_and_window() -> None:
    caps = parse_caps(["email:3/7d", "sms:2/24h", "all:6/1w", " push:03/30m "])
    assert caps == [
        Cap(channel=EMAIL, limit=3, amount=7, unit="d"),
        Cap(channel=SMS, limit=2, amount=24, unit="h"),
        Cap(channel=None, limit=6, amount=1, unit="w"),
        Cap(channel=PUSH, limit=3, amount=30, unit="m"),
    ]
    assert [cap.window for cap in caps] == [
        timedelta(days=7),
        timedelta(hours=24),
        timedelta(days=7),
        timedelta(minutes=30),
    ]
    assert [cap.text for cap in caps] == ["email:3/7d", "sms:2/24h", "all:6/1w", "push:3/30m"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "email",
        "email3/7d",
        "email:3/7",
        "email:3/7y",
        "email:3/7D",
        "Email:3/7d",
        "fax:3/7d",
        "email:0/7d",
        "email:-1/7d",
        "email:3/0d",
        "email:3/367d",
        "all:6/53w",
        "email:3/7d,sms:2/1d",
    ],
)
def test_bad_cap_is_refused_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_caps(["sms:2/24h", text])


def test_longest_window_tells_how_far_back_to_look() -> None:
    caps = parse_caps(["email:3/7d", "push:3/1d", "all:9/2w", "sms:1/366d"])
    assert longest_window(caps[:3]) == timedelta(days=14)
    assert longest_window(caps) == timedelta(days=366)
    assert longest_window([]) == timedelta(0)


# --- quiet hours through decide ---


def test_quiet_hours_defer_sms_to_local_morning() -> None:
    assert decide(facts(channel=SMS, now=EVENING)) == Verdict(
        VerdictKind.DEFER,
        "quiet_hours",
        "quiet hours 21:00-08:00 in Europe/Berlin: deferred to 2026-06-11 08:00 CEST",
        utc(2026, 6, 11, 6, 0),
    )


def test_quiet_hours_after_midnight_defer_to_the_same_morning() -> None:
    verdict = decide(facts(channel=PUSH, now=utc(2026, 6, 11, 3, 0)))  # 05:00 in Berlin
    assert (verdict.kind, verdict.at) == ("defer", utc(2026, 6, 11, 6, 0))


def test_quiet_hours_hold_only_their_channels() -> None:
    assert outcome(channel=EMAIL, now=EVENING) == ("send", None)
    assert outcome(channel=INAPP, now=EVENING) == ("send", None)
    assert outcome(channel=WHATSAPP, now=EVENING) == ("defer", "quiet_hours")


def test_transactional_sms_ignores_quiet_hours_unless_configured() -> None:
    changes = {"channel": SMS, "now": EVENING, "category": Category.TRANSACTIONAL}
    assert outcome(**changes) == ("send", None)
    verdict = decide(facts(**changes, quiet=replace(NIGHT, transactional=True)))
    assert (verdict.kind, verdict.at) == ("defer", utc(2026, 6, 11, 6, 0))


def test_quiet_hours_use_the_customer_time_zone() -> None:
    in_new_york = {"channel": SMS, "timezone": "America/New_York"}
    assert outcome(**in_new_york, now=EVENING) == ("send", None)  # 16:30 in New York
    verdict = decide(facts(**in_new_york, now=utc(2026, 6, 11, 2, 0)))  # 22:00 EDT
    assert (verdict.kind, verdict.at) == ("defer", utc(2026, 6, 11, 12, 0))


@pytest.mark.parametrize("zone", [None, "Mars/Base", "", "europe/berlin"])
def test_missing_or_unknown_time_zone_uses_the_default(zone: str | None) -> None:
    changes = {"channel": SMS, "timezone": zone, "default_timezone": "America/New_York"}
    verdict = decide(facts(**changes, now=utc(2026, 6, 11, 2, 0)))  # 22:00 EDT, 04:00 CEST
    assert (verdict.kind, verdict.at) == ("defer", utc(2026, 6, 11, 12, 0))


def test_unknown_default_time_zone_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="Mars/Base"):
        resolve_zone("Mars/Olympus", default="Mars/Base")
    assert resolve_zone("Asia/Kolkata", default="Mars/Base") == ZoneInfo("Asia/Kolkata")


def test_message_expiring_before_quiet_hours_end_is_refused() -> None:
    changes = {"channel": SMS, "now": EVENING}
    assert decide(facts(**changes, expires_at=utc(2026, 6, 11, 6, 0))) == Verdict(
        VerdictKind.REFUSE,
        "expired_in_quiet_hours",
        "quiet hours 21:00-08:00 in Europe/Berlin end at 2026-06-11 08:00 CEST, "
        "after the message expires at 2026-06-11 06:00 UTC",
    )
    verdict = decide(facts(**changes, expires_at=utc(2026, 6, 11, 6, 1)))
    assert (verdict.kind, verdict.at) == ("defer", utc(2026, 6, 11, 6, 0))


# --- the order of the policies ---


def test_expired_and_suppressed_message_reports_expired() -> None:
    assert outcome(expires_at=NOON, suppressed_reason="complaint") == ("refuse", "expired")


def test_suppression_beats_missing_consent() -> None:
    changes = {"suppressed_reason": "hard_bounce", "consents": {}}
    assert outcome(**changes) == ("refuse", "suppressed:hard_bounce")


def test_channel_consent_beats_pause_and_missing_address() -> None:
    unsubscribed = {("email", ""): "unsubscribed"}
    changes = {"consents": unsubscribed, "paused_until": NOON + timedelta(days=1), "address": None}
    assert outcome(**changes) == ("refuse", "unsubscribed")
    assert outcome(**{**changes, "consents": BASE.consents}) == ("refuse", "paused")


def test_missing_address_beats_frequency_cap() -> None:
    changes = {"caps": parse_caps(["email:1/7d"]), "recent_marketing": emails(timedelta(hours=1))}
    assert outcome(**changes, address=None) == ("refuse", "unreachable")


def test_frequency_cap_beats_quiet_hours() -> None:
    recent = [(SMS, EVENING - timedelta(hours=2))]
    changes = {"channel": SMS, "now": EVENING, "caps": parse_caps(["sms:1/1d"])}
    assert outcome(**changes, recent_marketing=recent) == ("refuse", "frequency_cap")
    assert outcome(**changes) == ("defer", "quiet_hours")


def test_expired_message_in_quiet_hours_reports_expired() -> None:
    assert outcome(channel=SMS, now=EVENING, expires_at=EVENING) == ("refuse", "expired")


# --- next_allowed_moment: windows and DST ---


def test_window_not_crossing_midnight_holds_from_start_to_end() -> None:
    lunch = {"start": time(13, 0), "end": time(14, 0)}
    assert next_allowed_moment(utc(2026, 6, 10, 11, 30), BERLIN, **lunch) == utc(2026, 6, 10, 12)
    assert next_allowed_moment(utc(2026, 6, 10, 11, 0), BERLIN, **lunch) == utc(2026, 6, 10, 12)
    assert next_allowed_moment(utc(2026, 6, 10, 12, 0), BERLIN, **lunch) is None
    assert next_allowed_moment(utc(2026, 6, 10, 10, 59), BERLIN, **lunch) is None


def test_window_crossing_midnight_includes_start_and_excludes_end() -> None:
    night = {"start": time(21, 0), "end": time(8, 0)}
    assert next_allowed_moment(utc(2026, 6, 10, 19, 0), BERLIN, **night) == utc(2026, 6, 11, 6)
    assert next_allowed_moment(utc(2026, 6, 10, 18, 59), BERLIN, **night) is None
    assert next_allowed_moment(utc(2026, 6, 11, 5, 59), BERLIN, **night) == utc(2026, 6, 11, 6)
    assert next_allowed_moment(utc(2026, 6, 11, 6, 0), BERLIN, **night) is None


def test_equal_start_and_end_mean_no_quiet_hours() -> None:
    assert next_allowed_moment(EVENING, BERLIN, start=time(21), end=time(21)) is None


def test_seconds_are_kept_until_the_end() -> None:
    now = datetime(2026, 6, 10, 20, 30, 15, 500, tzinfo=UTC)
    assert next_allowed_moment(now, BERLIN, start=time(21), end=time(22, 45)) == utc(
        2026, 6, 10, 20, 45
    )


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_allowed_moment(datetime(2026, 6, 10, 22), BERLIN, start=time(21), end=time(8))


def test_berlin_spring_forward_defers_to_summer_time_morning() -> None:
    # 2026-03-28 23:00 CET; the clocks jump 02:00 CET -> 03:00 CEST; 08:00 CEST is 06:00 UTC.
    at = next_allowed_moment(utc(2026, 3, 28, 22), BERLIN, start=time(21), end=time(8))
    assert at == utc(2026, 3, 29, 6)


def test_end_in_the_spring_forward_gap_defers_to_the_first_instant_after_it() -> None:
    # 02:30 does not exist in Berlin on 2026-03-29: 03:00 CEST (01:00 UTC) is the first after.
    at = next_allowed_moment(utc(2026, 3, 28, 23), BERLIN, start=time(21), end=time(2, 30))
    assert at == utc(2026, 3, 29, 1)


def test_berlin_fall_back_defers_to_winter_time_morning() -> None:
    # 2026-10-24 22:00 CEST; 03:00 CEST -> 02:00 CET overnight; 08:00 CET is 07:00 UTC.
    at = next_allowed_moment(utc(2026, 10, 24, 20), BERLIN, start=time(21), end=time(8))
    assert at == utc(2026, 10, 25, 7)


def test_ambiguous_end_in_berlin_uses_its_first_occurrence() -> None:
    # 02:30 happens twice on 2026-10-25: 02:30 CEST (00:30 UTC), then 02:30 CET (01:30 UTC).
    night = {"start": time(21), "end": time(2, 30)}
    assert next_allowed_moment(utc(2026, 10, 24, 20), BERLIN, **night) == utc(2026, 10, 25, 0, 30)
    # In the repeated hour, 02:10 CET (01:10 UTC) reads inside the window again.
    assert next_allowed_moment(utc(2026, 10, 25, 1, 10), BERLIN, **night) == utc(
        2026, 10, 25, 1, 30
    )
    assert next_allowed_moment(utc(2026, 10, 25, 0, 50), BERLIN, **night) is None  # 02:50 CEST


def test_new_york_spring_forward_defers_to_daylight_time_morning() -> None:
    # 2026-03-07 22:00 EST; 02:00 EST -> 03:00 EDT; 08:00 EDT is 12:00 UTC.
    at = next_allowed_moment(utc(2026, 3, 8, 3), NEW_YORK, start=time(21), end=time(8))
    assert at == utc(2026, 3, 8, 12)


def test_end_in_new_york_gap_defers_to_three_in_the_morning() -> None:
    # 02:30 does not exist on 2026-03-08: 03:00 EDT (07:00 UTC) is the first instant after.
    at = next_allowed_moment(utc(2026, 3, 8, 4), NEW_YORK, start=time(22), end=time(2, 30))
    assert at == utc(2026, 3, 8, 7)


def test_new_york_fall_back_defers_to_standard_time_morning() -> None:
    # 2026-10-31 22:00 EDT; 02:00 EDT -> 01:00 EST; 08:00 EST is 13:00 UTC.
    at = next_allowed_moment(utc(2026, 11, 1, 2), NEW_YORK, start=time(21), end=time(8))
    assert at == utc(2026, 11, 1, 13)


def test_ambiguous_end_in_new_york_uses_its_first_occurrence() -> None:
    # 01:30 EDT is 05:30 UTC; its second occurrence, 01:30 EST, would be 06:30 UTC.
    at = next_allowed_moment(utc(2026, 11, 1, 3), NEW_YORK, start=time(22), end=time(1, 30))
    assert at == utc(2026, 11, 1, 5, 30)


def test_fall_back_to_before_the_start_allows_sending_at_the_jump() -> None:
    # 01:45 EDT is inside 01:30-08:00; at 06:00 UTC the clock reads 01:00 EST, outside.
    at = next_allowed_moment(utc(2026, 11, 1, 5, 45), NEW_YORK, start=time(1, 30), end=time(8))
    assert at == utc(2026, 11, 1, 6)


def test_lord_howe_half_hour_gap_defers_to_its_end() -> None:
    # 2026-10-04 02:00 LHST (+10:30) -> 02:30 LHDT (+11) at 2026-10-03 15:30 UTC.
    zone = ZoneInfo("Australia/Lord_Howe")
    at = next_allowed_moment(utc(2026, 10, 3, 11), zone, start=time(21), end=time(2, 15))
    assert at == utc(2026, 10, 3, 15, 30)


# --- next_allowed_moment against a minute-by-minute reference ---

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
ZONES.append("Pacific/Chatham")
# The 2026 offset changes of those zones (UTC), to draw many instants near one.
CHANGES_2026 = [
    utc(2026, 3, 29, 1),
    utc(2026, 10, 25, 1),
    utc(2026, 3, 8, 7),
    utc(2026, 11, 1, 6),
    utc(2026, 4, 4, 15),
    utc(2026, 10, 3, 15, 30),
    utc(2026, 4, 4, 14),
    utc(2026, 9, 26, 14),
]
YEAR = utc(2026, 1, 1)
any_minute = st.integers(0, 365 * 24 * 60 - 1).map(lambda m: YEAR + timedelta(minutes=m))
near_change = st.builds(
    lambda change, m: change + timedelta(minutes=m),
    st.sampled_from(CHANGES_2026),
    st.integers(-36 * 60, 36 * 60),
)
whole_minutes = st.builds(time, st.integers(0, 23), st.integers(0, 59))
near_night_changes = st.builds(time, st.integers(0, 4), st.sampled_from([0, 15, 30, 45, 59]))
clock_times = st.one_of(whole_minutes, near_night_changes)


def reference_next_allowed(
    now: datetime, zone: ZoneInfo, start: time, end: time
) -> datetime | None:
    """Step minute by minute until the local clock reads outside [start, end)."""

    def quiet(at: datetime) -> bool:
        local = at.astimezone(zone)
        minute = local.hour * 60 + local.minute
        first, last = start.hour * 60 + start.minute, end.hour * 60 + end.minute
        return (minute - first) % 1440 < (last - first) % 1440

    if not quiet(now):
        return None
    for step in range(1, 2 * 24 * 60 + 1):
        if not quiet(now + timedelta(minutes=step)):
            return now + timedelta(minutes=step)
    raise AssertionError("still quiet two days later")


@settings(max_examples=600, deadline=None)
@given(
    zone=st.sampled_from(ZONES).map(ZoneInfo),
    now=st.one_of(any_minute, near_change),
    start=clock_times,
    end=clock_times,
)
def test_next_allowed_moment_agrees_with_minute_by_minute_reference(
    zone: ZoneInfo, now: datetime, start: time, end: time
) -> None:
    expected = reference_next_allowed(now, zone, start, end)
    assert next_allowed_moment(now, zone, start=start, end=end) == expected


# --- choose_channel ---


def always(channel: MessageChannel) -> bool:
    return True


def test_auto_channel_prefers_the_customers_choice() -> None:
    chosen = choose_channel(
        preferred=EMAIL, order=[WHATSAPP, SMS, EMAIL], available={SMS, EMAIL}, allowed=always
    )
    assert chosen == EMAIL


def test_auto_channel_follows_the_order_when_preferred_has_no_template() -> None:
    chosen = choose_channel(
        preferred=PUSH, order=[WHATSAPP, SMS, EMAIL], available={SMS, EMAIL}, allowed=always
    )
    assert chosen == SMS


def test_auto_channel_skips_channels_the_policies_refuse() -> None:
    chosen = choose_channel(
        preferred=SMS,
        order=[WHATSAPP, SMS, EMAIL, INAPP],
        available={SMS, EMAIL, INAPP},
        allowed=lambda channel: channel not in (SMS, EMAIL),
    )
    assert chosen == INAPP


def test_auto_channel_without_preference_takes_the_first_in_order() -> None:
    chosen = choose_channel(
        preferred=None, order=[PUSH, EMAIL], available={EMAIL, PUSH}, allowed=always
    )
    assert chosen == PUSH


def test_auto_channel_is_none_when_nothing_qualifies() -> None:
    chosen = choose_channel(
        preferred=EMAIL, order=[SMS, EMAIL], available={SMS, EMAIL}, allowed=lambda c: False
    )
    assert chosen is None
    assert choose_channel(preferred=None, order=[SMS], available=set(), allowed=always) is None


def test_auto_channel_asks_about_each_channel_once() -> None:
    asked: list[MessageChannel] = []

    def refuse(channel: MessageChannel) -> bool:
        asked.append(channel)
        return False

    choose_channel(preferred=SMS, order=[SMS, PUSH, EMAIL], available={SMS, EMAIL}, allowed=refuse)
    assert asked == [SMS, EMAIL]
