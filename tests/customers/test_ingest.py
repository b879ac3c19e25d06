"""The ingestion core on both databases: identity resolution, merges, dedupe, facts, consents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from regulars.customers import service
from regulars.customers.models import (
    Consent,
    ConsentChange,
    Customer,
    CustomerEventCount,
    CustomerMerge,
    Event,
    Group,
    GroupMembership,
    IdentityKind,
)
from regulars.db import Database, session_scope
from regulars.kit import clock
from tests.customers.helpers import count, customer, events_of, facts, ingest, owner_of

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def test_anonymous_events_create_an_anonymous_profile(database: Database) -> None:
    result = ingest([{"type": "page", "anonymousId": "anon-1", "messageId": "m1"}])
    assert (result.accepted, result.rejected) == (1, [])
    owner = owner_of("anon-1", IdentityKind.ANONYMOUS_ID)
    assert owner is not None
    assert customer(owner).external_id is None
    assert [e.type for e in events_of(owner)] == ["page"]


def test_identify_links_anonymous_history_to_the_user(database: Database) -> None:
    ingest([{"type": "track", "anonymousId": "a", "event": "Product Viewed", "messageId": "1"}])
    ingest([{"type": "identify", "anonymousId": "a", "userId": "u", "messageId": "2"}])
    owner = owner_of("u")
    assert owner == owner_of("a", IdentityKind.ANONYMOUS_ID)
    assert owner is not None
    assert customer(owner).external_id == "u"
    assert len(events_of(owner)) == 2
    assert count(Customer) == 1


def test_identify_proving_two_profiles_are_one_merges_them(database: Database) -> None:
    ingest(
        [
            {"type": "identify", "userId": "u", "traits": {"plan": "gold"}, "messageId": "1"},
            {
                "type": "track",
                "anonymousId": "a",
                "event": "Order Completed",
                "properties": {"revenue": 30},
                "messageId": "2",
                "timestamp": at(5),
            },
        ]
    )
    anonymous = owner_of("a", IdentityKind.ANONYMOUS_ID)
    user = owner_of("u")
    assert anonymous is not None and user is not None and anonymous != user
    ingest([{"type": "identify", "userId": "u", "anonymousId": "a", "messageId": "3"}])
    assert owner_of("a", IdentityKind.ANONYMOUS_ID) == user
    assert count(Customer) == 1
    assert facts(user).orders_count == 1
    assert facts(user).revenue_total_cents == 3000
    assert facts(user).events_count == 3
    with session_scope(readonly=True) as session:
        assert service.resolve_id(session, anonymous) == user
        merge = session.get(CustomerMerge, anonymous)
        assert merge is not None and merge.survivor_id == user


def test_alias_merges_previous_id_into_user(database: Database) -> None:
    ingest([{"type": "track", "anonymousId": "old", "event": "Product Added", "messageId": "1"}])
    ingest([{"type": "identify", "userId": "new", "messageId": "2"}])
    ingest([{"type": "alias", "previousId": "old", "userId": "new", "messageId": "3"}])
    survivor = owner_of("new")
    assert survivor is not None
    assert owner_of("old", IdentityKind.ANONYMOUS_ID) == survivor
    with session_scope(readonly=True) as session:
        counts = session.scalars(select(CustomerEventCount)).all()
    assert [(c.customer_id, c.event_name, c.count) for c in counts] == [
        (survivor, "Product Added", 1)
    ]


def test_merges_chain_so_every_old_id_resolves_to_the_last_survivor(database: Database) -> None:
    ingest([{"type": "page", "anonymousId": "a1", "messageId": "1"}])
    first = owner_of("a1", IdentityKind.ANONYMOUS_ID)
    ingest([{"type": "page", "anonymousId": "a2", "messageId": "2"}])
    ingest(
        [
            {
                "type": "alias",
                "previousId": "a1",
                "userId": "u1",
                "anonymousId": "a2",
                "messageId": "3",
            }
        ]
    )
    ingest([{"type": "identify", "userId": "u2", "messageId": "4"}])
    ingest([{"type": "alias", "previousId": "u1", "userId": "u2", "messageId": "5"}])
    last = owner_of("u2")
    assert first is not None and last is not None
    with session_scope(readonly=True) as session:
        assert service.resolve_id(session, first) == last
    assert count(Customer) == 1
    assert len(events_of(last)) == 5


def test_a_device_of_another_user_does_not_merge_two_people(database: Database) -> None:
    ingest([{"type": "identify", "userId": "ann", "anonymousId": "shared", "messageId": "1"}])
    ingest([{"type": "identify", "userId": "bob", "anonymousId": "shared", "messageId": "2"}])
    ann, bob = owner_of("ann"), owner_of("bob")
    assert ann is not None and bob is not None and ann != bob
    assert owner_of("shared", IdentityKind.ANONYMOUS_ID) == ann


def test_same_message_id_twice_is_stored_and_counted_once(database: Database) -> None:
    order = {
        "type": "track",
        "userId": "u",
        "event": "Order Completed",
        "properties": {"revenue": "12.50"},
        "messageId": "order-1",
    }
    first = ingest([order, order])
    second = ingest([order])
    assert (first.accepted, first.duplicates) == (1, 1)
    assert (second.accepted, second.duplicates) == (0, 1)
    owner = owner_of("u")
    assert owner is not None
    assert facts(owner).orders_count == 1
    assert facts(owner).revenue_total_cents == 1250


def test_same_message_id_from_two_sources_is_two_events(database: Database) -> None:
    message = {"type": "track", "userId": "u", "event": "Clicked", "messageId": "same"}
    ingest([message], source="web")
    ingest([message], source="ios")
    assert count(Event) == 2


def test_clock_skew_is_corrected_with_sent_at(database: Database) -> None:
    received = datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC)
    with clock.frozen(received), session_scope() as session:
        service.ingest(
            session,
            [
                {
                    "type": "track",
                    "userId": "u",
                    "event": "Clicked",
                    "messageId": "1",
                    "timestamp": "2026-03-01T11:00:00Z",
                    "sentAt": "2026-03-01T11:00:05Z",
                }
            ],
            source="test",
        )
    owner = owner_of("u")
    assert owner is not None
    # the device's clock ran 1 h 5 s behind: shifted by receivedAt - sentAt
    assert events_of(owner)[0].timestamp == datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)


def test_invalid_messages_are_rejected_and_the_rest_kept(database: Database) -> None:
    result = ingest(
        [
            {"type": "track", "userId": "u", "event": "Ok", "messageId": "1"},
            {"type": "track", "userId": "u", "messageId": "2"},
            {"type": "identify", "userId": "u", "traits": {"timezone": "Mars/Olympus"}},
            {"type": "identify", "userId": "u", "traits": {"email": "not-an-email"}},
            {"type": "teleport", "userId": "u"},
            {"type": "track", "event": "No one"},
            "not an object",
        ]
    )
    assert result.accepted == 1
    assert [(r.index, r.code) for r in result.rejected] == [
        (1, "missing_field"),
        (2, "invalid_timezone"),
        (3, "invalid_email"),
        (4, "invalid_type"),
        (5, "missing_identity"),
        (6, "invalid_message"),
    ]
    assert count(Event) == 1


def test_newest_traits_win_and_late_data_only_fills_gaps(database: Database) -> None:
    ingest(
        [
            {
                "type": "identify",
                "userId": "u",
                "messageId": "2",
                "timestamp": at(10),
                "traits": {"plan": "gold", "firstName": "Ann", "email": "ann@new.example"},
            }
        ]
    )
    ingest(
        [
            {
                "type": "identify",
                "userId": "u",
                "messageId": "1",
                "timestamp": at(0),
                "traits": {"plan": "silver", "city": "Berlin", "email": "ann@old.example"},
            }
        ]
    )
    owner = owner_of("u")
    assert owner is not None
    profile = customer(owner)
    assert profile.traits["plan"] == "gold"
    assert profile.traits["city"] == "Berlin"
    assert profile.email == "ann@new.example"
    assert profile.first_name == "Ann"


def test_profile_fields_are_validated_and_normalised(database: Database) -> None:
    ingest(
        [
            {
                "type": "identify",
                "userId": "u",
                "messageId": "1",
                "traits": {
                    "phone": "(415) 555-2671",
                    "timezone": "America/Los_Angeles",
                    "locale": "en_US",
                    "lastName": "Lee",
                },
            }
        ]
    )
    owner = owner_of("u")
    assert owner is not None
    profile = customer(owner)
    assert (profile.phone, profile.timezone, profile.locale, profile.last_name) == (
        "+14155552671",
        "America/Los_Angeles",
        "en-US",
        "Lee",
    )


def test_consents_from_traits_keep_history(database: Database) -> None:
    ingest(
        [
            {
                "type": "identify",
                "userId": "u",
                "messageId": "1",
                "timestamp": at(0),
                "traits": {"consents": {"email": "subscribed", "sms:promotions": True}},
            }
        ]
    )
    ingest(
        [
            {
                "type": "identify",
                "userId": "u",
                "messageId": "2",
                "timestamp": at(1),
                "traits": {"consents": {"email": False}},
            }
        ]
    )
    owner = owner_of("u")
    assert owner is not None
    with session_scope(readonly=True) as session:
        current = {(c.channel, c.topic): c.status for c in session.scalars(select(Consent))}
        history = [
            (h.channel, h.status)
            for h in session.scalars(
                select(ConsentChange).order_by(ConsentChange.changed_at, ConsentChange.id)
            )
        ]
    assert current == {("email", ""): "unsubscribed", ("sms", "promotions"): "subscribed"}
    assert history == [("email", "subscribed"), ("sms", "subscribed"), ("email", "unsubscribed")]
    assert "consents" not in customer(owner).traits


def test_group_call_creates_group_and_membership(database: Database) -> None:
    ingest(
        [
            {
                "type": "group",
                "userId": "u",
                "groupId": "acme",
                "messageId": "1",
                "traits": {"name": "ACME", "employees": 40},
            }
        ]
    )
    ingest(
        [
            {
                "type": "group",
                "userId": "v",
                "groupId": "acme",
                "messageId": "2",
                "traits": {"employees": 42},
            }
        ]
    )
    with session_scope(readonly=True) as session:
        group = session.scalars(select(Group)).one()
        members = session.scalars(select(GroupMembership.customer_id)).all()
    assert group.traits == {"name": "ACME", "employees": 42}
    assert sorted(members) == sorted([owner_of("u"), owner_of("v")], key=str)


def test_refunds_and_orders_make_exact_facts(database: Database) -> None:
    ingest(
        [
            {
                "type": "track",
                "userId": "u",
                "event": "Order Completed",
                "messageId": "1",
                "timestamp": at(0),
                "properties": {"revenue": 10.10},
            },
            {
                "type": "track",
                "userId": "u",
                "event": "Order Completed",
                "messageId": "2",
                "timestamp": at(60),
                "properties": {"total": "0.20"},
            },
            {
                "type": "track",
                "userId": "u",
                "event": "Order Refunded",
                "messageId": "3",
                "timestamp": at(90),
                "properties": {"revenue": 0.2},
            },
        ]
    )
    owner = owner_of("u")
    assert owner is not None
    row = facts(owner)
    assert (row.orders_count, row.revenue_total_cents) == (2, 1030)
    assert (row.refunds_count, row.refunded_total_cents) == (1, 20)
    assert row.first_order_at == T0
    assert row.last_order_at == T0 + timedelta(minutes=60)
    assert row.last_seen_at == T0 + timedelta(minutes=90)
