"""The demo generator is pure and deterministic; these tests read only its messages."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import phonenumbers
import pytest

from regulars.demo.generator import Message, generate

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def store() -> list[Message]:
    return list(generate(7, customers=2000, months=12, now=NOW))


def _identifies(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m["type"] == "identify"]


def test_same_seed_gives_the_same_messages() -> None:
    first = list(generate(3, customers=40, months=3, now=NOW))
    again = list(generate(3, customers=40, months=3, now=NOW))
    assert first == again


def test_another_seed_gives_another_store() -> None:
    first = list(generate(3, customers=40, months=3, now=NOW))
    other = list(generate(4, customers=40, months=3, now=NOW))
    assert {m["messageId"] for m in first}.isdisjoint({m["messageId"] for m in other})
    assert [m["timestamp"] for m in first] != [m["timestamp"] for m in other]


def test_store_has_two_thousand_customers_in_many_zones_and_locales(store: list[Message]) -> None:
    assert len({m["userId"] for m in store if "userId" in m}) == 2000
    assert len({m["context"]["timezone"] for m in store}) >= 5
    assert len({m["context"]["locale"] for m in store}) >= 3


def test_every_timestamp_lies_in_the_twelve_months_before_now(store: list[Message]) -> None:
    stamps = [datetime.fromisoformat(m["timestamp"]) for m in store]
    assert max(stamps) <= NOW
    assert min(stamps) >= NOW - timedelta(days=366)
    assert max(stamps) - min(stamps) >= timedelta(days=330)
    assert len({(s.year, s.month) for s in stamps}) >= 12


def test_message_ids_are_unique(store: list[Message]) -> None:
    assert len({m["messageId"] for m in store}) == len(store)


def test_phones_are_valid_e164_of_the_customers_market(store: list[Message]) -> None:
    phones = [m["traits"]["phone"] for m in _identifies(store) if "phone" in m["traits"]]
    assert len(phones) > 1000
    assert len(set(phones)) == len(phones)
    for phone in phones:
        number = phonenumbers.parse(phone, None)
        assert phonenumbers.is_valid_number(number), phone
        assert phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) == phone


def test_emails_are_unique_and_ascii(store: list[Message]) -> None:
    emails = [m["traits"]["email"] for m in _identifies(store) if "email" in m["traits"]]
    assert len(emails) == 2000
    assert len(set(emails)) == len(emails)
    assert all(e.isascii() and e.count("@") == 1 for e in emails)


def test_consents_are_mixed(store: list[Message]) -> None:
    statuses = Counter(
        (channel, status)
        for m in _identifies(store)
        for channel, status in m["traits"].get("consents", {}).items()
    )
    for channel in ("email", "sms", "email:newsletter"):
        assert statuses[(channel, "subscribed")] > 0
        assert statuses[(channel, "unsubscribed")] > 0


def test_funnel_has_every_step_and_some_carts_are_abandoned(store: list[Message]) -> None:
    events = Counter(m.get("event") for m in store if m["type"] == "track")
    assert events["Product Viewed"] > events["Product Added"] > events["Order Completed"] > 0
    assert events["Order Refunded"] > 0
    started = {m["messageId"] for m in store if m.get("event") == "Checkout Started"}
    assert events["Checkout Started"] == len(started)
    assert len(started) > 0
    # more carts are started than turned into orders (renewals are orders without a checkout)
    renewals = sum(
        1 for m in store if m.get("event") == "Order Completed" and "anonymousId" not in m
    )
    assert events["Checkout Started"] > events["Order Completed"] - renewals


def test_orders_carry_id_revenue_currency_and_line_items(store: list[Message]) -> None:
    orders = [m for m in store if m.get("event") == "Order Completed"]
    assert len({o["properties"]["order_id"] for o in orders}) == len(orders)
    for order in orders:
        props = order["properties"]
        lines = sum(Decimal(str(p["price"])) * p["quantity"] for p in props["products"])
        assert Decimal(str(props["revenue"])) == lines
        assert props["currency"] == "USD"


def test_refunds_name_an_earlier_order(store: list[Message]) -> None:
    ordered = {
        m["properties"]["order_id"]: m["timestamp"]
        for m in store
        if m.get("event") == "Order Completed"
    }
    refunds = [m for m in store if m.get("event") == "Order Refunded"]
    assert refunds
    for refund in refunds:
        assert ordered[refund["properties"]["order_id"]] < refund["timestamp"]


def test_some_visitors_browse_anonymously_then_identify(store: list[Message]) -> None:
    first_seen: dict[str, Message] = {}
    for message in store:
        if "anonymousId" in message:
            first_seen.setdefault(message["anonymousId"], message)
    linked = [
        m
        for m in _identifies(store)
        if "userId" not in first_seen[m["anonymousId"]]
        and first_seen[m["anonymousId"]]["timestamp"] < m["timestamp"]
    ]
    assert len(linked) > 500
    guest_orders = [m for m in store if m.get("event") == "Order Completed" and "userId" not in m]
    assert guest_orders
    never_identified = {m["anonymousId"] for m in store if "anonymousId" in m} - {
        m["anonymousId"] for m in store if "userId" in m and "anonymousId" in m
    }
    assert len(never_identified) >= 2000 // 5


def test_messages_of_a_person_come_in_time_order(store: list[Message]) -> None:
    last: dict[str, str] = {}
    for message in store:
        person = str(message.get("userId") or message["anonymousId"])
        assert last.get(person, "") <= message["timestamp"]
        last[person] = message["timestamp"]


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next(generate(1, customers=1, months=1, now=datetime(2026, 1, 1)))
