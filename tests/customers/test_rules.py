"""Pure rules: parsing, validation, money, clock skew, trait merging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regulars.customers.models import EventType
from regulars.customers.rules import (
    Facts,
    MessageInvalid,
    consent_changes,
    corrected_timestamp,
    merge_traits,
    normalise_phone,
    normalise_timezone,
    parse_message,
    to_cents,
)

NOW = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def parse(raw: object) -> object:
    return parse_message(raw, received_at=NOW, max_bytes=32 * 1024, phone_region="DE")


def test_money_is_exact_in_cents() -> None:
    assert to_cents("19.99", "revenue") == 1999
    assert to_cents(0.1, "revenue") == 10
    assert to_cents(7, "revenue") == 700
    assert to_cents("-5.50", "revenue") == -550


@pytest.mark.parametrize("value", ["abc", "NaN", "Infinity", True, None, [], "1e400"])
def test_money_that_is_not_a_number_is_refused(value: object) -> None:
    with pytest.raises(MessageInvalid):
        to_cents(value, "revenue")


@given(st.integers(-(10**12), 10**12))
def test_cents_survive_a_round_trip_through_text(cents: int) -> None:
    sign = "-" if cents < 0 else ""
    text = f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"
    assert to_cents(text, "revenue") == cents


def test_clock_skew_shifts_by_received_minus_sent() -> None:
    timestamp = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    sent = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
    assert corrected_timestamp(timestamp, sent, NOW) == timestamp + timedelta(minutes=30)
    assert corrected_timestamp(timestamp, None, NOW) == timestamp
    assert corrected_timestamp(None, sent, NOW) == NOW


def test_phone_numbers_are_read_in_the_default_region() -> None:
    assert normalise_phone("030 901820", "DE") == "+4930901820"
    assert normalise_phone("+1 415 555 2671", "DE") == "+14155552671"
    with pytest.raises(MessageInvalid, match="not a valid number"):
        normalise_phone("+1 555", "DE")


@pytest.mark.parametrize("zone", ["Mars/Base", "Etc", "", "europe/berlin"])
def test_unknown_time_zones_are_refused(zone: str) -> None:
    with pytest.raises(MessageInvalid, match="IANA"):
        normalise_timezone(zone)


def test_consent_trait_accepts_channels_topics_and_booleans() -> None:
    changes = consent_changes({"email": True, "sms:promotions": "unsubscribed"})
    assert [(c.channel, c.topic, c.status) for c in changes] == [
        ("email", "", "subscribed"),
        ("sms", "promotions", "unsubscribed"),
    ]
    with pytest.raises(MessageInvalid, match="pigeon"):
        consent_changes({"pigeon": True})


def test_oversized_message_is_refused_with_its_size() -> None:
    with pytest.raises(MessageInvalid, match="limit is 32768"):
        parse({"type": "track", "userId": "u", "event": "x", "properties": {"a": "b" * 40_000}})


def test_newer_traits_win_older_ones_fill_gaps() -> None:
    current = {"plan": "gold", "city": "Berlin"}
    assert merge_traits(current, {"plan": "free", "age": 3}, incoming_is_newer=True) == {
        "plan": "free",
        "city": "Berlin",
        "age": 3,
    }
    assert merge_traits(current, {"plan": "free", "age": 3}, incoming_is_newer=False) == {
        "plan": "gold",
        "city": "Berlin",
        "age": 3,
    }


def test_facts_absorb_is_the_same_as_observing_everything_in_one() -> None:
    a, b, both = Facts(), Facts(), Facts()
    events = [
        ("Order Completed", 1000, 1),
        ("Product Viewed", 0, 2),
        ("Order Completed", 50, 3),
        ("Order Refunded", 50, 4),
    ]
    for i, (name, cents, minute) in enumerate(events):
        at = NOW + timedelta(minutes=minute)
        props = {"revenue": cents / 100}
        (a if i % 2 else b).observe(EventType.TRACK, name, props, at)
        both.observe(EventType.TRACK, name, props, at)
    a.absorb(b)
    assert a == both
    assert both.average_order_value_cents == 525
