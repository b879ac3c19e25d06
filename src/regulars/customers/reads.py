"""Read verbs of the customers domain: profiles, timelines and consents as the API shows them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from regulars.customers import changes as customer_changes
from regulars.customers import repository
from regulars.customers.models import (
    Customer,
    CustomerFacts,
    Event,
    EventType,
    IdentityKind,
)
from regulars.customers.profiles import set_consents, update_traits
from regulars.customers.rules import ConsentChangeIn, MessageInvalid, normalise_email
from regulars.customers.schemas import (
    ConsentRead,
    ConsentUpdate,
    CustomerPage,
    CustomerQuery,
    CustomerRead,
    CustomerUpdate,
    EventPage,
    EventRead,
    FactsRead,
    average,
    money,
)
from regulars.errors import Conflict, ValidationFailed
from regulars.kit.pagination import decode_cursor, encode_cursor


def _facts_read(facts: Any, counts: dict[str, int]) -> FactsRead:
    """`facts`: a facts row (a CustomerFacts, or a plain row with the same columns)."""
    if facts is None:  # a profile always has a facts row; this only guards a missing one
        facts = CustomerFacts(events_count=0, orders_count=0, revenue_total_cents=0)
        facts.refunds_count, facts.refunded_total_cents = 0, 0
    return FactsRead(
        orders_count=facts.orders_count,
        revenue_total=money(facts.revenue_total_cents),
        average_order_value=average(facts.revenue_total_cents, facts.orders_count),
        first_order_at=facts.first_order_at,
        last_order_at=facts.last_order_at,
        first_seen_at=facts.first_seen_at,
        last_seen_at=facts.last_seen_at,
        events_count=facts.events_count,
        refunds_count=facts.refunds_count,
        refunded_total=money(facts.refunded_total_cents),
        event_counts=counts,
    )


def _consent_read(consent: Any) -> ConsentRead:
    """`consent`: a Consent, or a plain row with its columns."""
    return ConsentRead(
        channel=consent.channel,
        topic=consent.topic,
        status=consent.status,
        source=consent.source,
        updated_at=consent.updated_at,
    )


def customer_reads(
    session: Session, customers: Sequence[Any], *, identities: bool = True
) -> list[CustomerRead]:
    """Profiles with identities, facts, counts and consents: five queries for a whole page
    (four without identities: `anonymous_ids` is then left empty). `customers`: Customer
    objects or plain profile rows; the rest is read as plain rows, not ORM objects."""
    ids = [customer.id for customer in customers]
    anonymous_ids: dict[str, list[str]] = defaultdict(list)
    found = repository.identities_of(session, ids) if identities else []
    for identity in sorted(found, key=lambda i: i.value):
        if identity.kind == IdentityKind.ANONYMOUS_ID:
            anonymous_ids[identity.customer_id].append(identity.value)
    facts = facts_of(session, ids)
    consents: dict[str, list[ConsentRead]] = defaultdict(list)
    for consent in sorted(
        repository.consent_rows(session, ids), key=lambda c: (c.channel, c.topic)
    ):
        consents[consent.customer_id].append(_consent_read(consent))
    return [
        CustomerRead(
            **_profile_values(c),
            anonymous_ids=anonymous_ids[c.id],
            facts=facts[c.id],
            consents=consents[c.id],
        )
        for c in customers
    ]


@dataclass(frozen=True, slots=True)
class Recipient:
    """What sending a message reads of a customer: the profile and the consents, as plain
    values. Sends read hundreds per batch, and most never print the facts (`facts_of` reads
    them for those that do), so no CustomerRead is built: its models were a tenth of a send."""

    id: str
    external_id: str | None
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    timezone: str | None
    locale: str | None
    traits: dict[str, Any]
    consents: Mapping[tuple[str, str], str]  # (channel, topic) -> status
    created_at: datetime
    updated_at: datetime

    def profile(self) -> dict[str, Any]:
        """The profile as templates read `customer`: CustomerRead's JSON form without the
        identities, facts and consents (times in UTC, ISO 8601 with a Z)."""
        values = _profile_values(self)
        values["created_at"] = _json_time(self.created_at)
        values["updated_at"] = _json_time(self.updated_at)
        return values


# A profile's own columns, as CustomerRead and Recipient carry them: Recipient's fields but
# the consents, which come from a table of their own.
_PROFILE_FIELDS = tuple(field.name for field in fields(Recipient) if field.name != "consents")


def _profile_values(customer: Any) -> dict[str, Any]:
    """`customer`: a Customer, a plain profile row or a Recipient."""
    return {name: getattr(customer, name) for name in _PROFILE_FIELDS}


def _json_time(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def recipients(session: Session, customer_ids: Sequence[str]) -> dict[str, Recipient]:
    """Many customers as a send reads them, in two queries (ids as stored, not followed
    through merges); missing ids are left out."""
    profiles = repository.profile_rows(session, customer_ids)
    consents = consent_statuses(session, list(profiles))
    return {
        c.id: Recipient(**_profile_values(c), consents=consents.get(c.id, {}))
        for c in profiles.values()
    }


def facts_of(session: Session, customer_ids: Sequence[str]) -> dict[str, FactsRead]:
    """Each customer's facts (with the tracked event counts), by id, in two queries."""
    facts = repository.facts_rows(session, customer_ids)
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for customer_id, event_name, count in repository.event_count_rows(session, customer_ids):
        counts[customer_id][event_name] = count
    return {
        customer_id: _facts_read(facts.get(customer_id), counts[customer_id])
        for customer_id in customer_ids
    }


def live(session: Session, customer_id: str) -> Customer | None:
    """The profile behind an id, following merges (a merged-away id answers the survivor).
    The row found first is the one answered: resolving the id and then loading it again read
    it twice (the session keeps no row nobody holds)."""
    customer = repository.get(session, customer_id)
    if customer is not None:
        return customer
    survivor = repository.survivor_of(session, customer_id)
    return None if survivor is None else repository.get(session, survivor)


def get_customer(session: Session, customer_id: str) -> CustomerRead | None:
    customer = live(session, customer_id)
    return None if customer is None else customer_reads(session, [customer])[0]


def list_customers(
    session: Session, query: CustomerQuery, *, cursor: str | None, limit: int
) -> CustomerPage:
    after_id = None
    if cursor is not None:
        (after_id,) = decode_cursor(cursor, 1)
        if not isinstance(after_id, str):
            raise ValidationFailed("cursor is not valid: pass next_cursor back unchanged")
    rows = repository.list_customers(session, query, after_id=after_id, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].id) if more else None
    return CustomerPage(items=customer_reads(session, rows), next_cursor=next_cursor)


def find_customer(session: Session, reference: str) -> str | None:
    """The customer an id, an external id or an email names (for people typing at a CLI)."""
    customer = live(session, reference) or repository.get_by_external_id(session, reference)
    if customer is not None:
        return customer.id
    try:
        email = normalise_email(reference)
    except MessageInvalid:
        return None
    matches = repository.list_by_email(session, email)
    if len(matches) > 1:
        ids = ", ".join(match.id for match in matches)
        raise Conflict(f"{len(matches)} customers have the email {email}: {ids}")
    return matches[0].id if matches else None


def event_read(event: Event) -> EventRead:
    return EventRead(
        id=event.id,
        type=event.type,
        name=event.name,
        properties=event.properties,
        context=event.context,
        timestamp=event.timestamp,
        received_at=event.received_at,
        sent_at=event.sent_at,
        message_id=event.message_id,
        source=event.source,
    )


def _event_position(cursor: str) -> tuple[datetime, int]:
    at, event_id = decode_cursor(cursor, 2)
    try:
        if not isinstance(at, str) or isinstance(event_id, bool) or not isinstance(event_id, int):
            raise ValueError("wrong types")
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("naive time")
    except ValueError as exc:
        raise ValidationFailed("cursor is not valid: pass next_cursor back unchanged") from exc
    return when, event_id


def list_events(
    session: Session,
    customer_id: str,
    *,
    type: EventType | None = None,
    name: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> EventPage | None:
    """A customer's timeline, newest first; None when there is no such customer."""
    customer = live(session, customer_id)
    if customer is None:
        return None
    before = _event_position(cursor) if cursor is not None else None
    rows = repository.list_events(
        session, customer.id, type=type, name=name, before=before, limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more else None
    next_cursor = encode_cursor(last.timestamp.isoformat(), last.id) if last else None
    return EventPage(items=[event_read(e) for e in rows], next_cursor=next_cursor)


def list_consents(session: Session, customer_id: str) -> list[ConsentRead] | None:
    customer = live(session, customer_id)
    if customer is None:
        return None
    found = repository.consents_of(session, [customer.id])
    return [_consent_read(c) for c in sorted(found, key=lambda c: (c.channel, c.topic))]


def change_consents(
    session: Session, customer_id: str, changes: Sequence[ConsentUpdate], *, source: str
) -> list[ConsentRead] | None:
    """Apply consent changes (each one kept in the history); answer every current consent."""
    customer = live(session, customer_id)
    if customer is None:
        return None
    set_consents(
        session,
        customer.id,
        [ConsentChangeIn(channel=c.channel, topic=c.topic, status=c.status) for c in changes],
        source=source,
    )
    session.flush()
    customer_changes.publish(session, customer_changes.one([customer.id], consents=True))
    return list_consents(session, customer.id)


def update_profile(
    session: Session, customer_id: str, changes: CustomerUpdate, *, at: datetime
) -> CustomerRead | None:
    """Change built-in fields and traits; the profile counts as updated at `at`."""
    customer = live(session, customer_id)
    if customer is None:
        return None
    for field_name, value in changes.profile_changes().items():
        setattr(customer, field_name, value)
    customer.updated_at = at
    customer.traits_updated_at = at
    session.flush()
    if changes.traits is not None:  # update_traits tells listeners of the whole change
        customer = update_traits(session, customer.id, changes.traits, at=at)
    else:
        customer_changes.publish(session, customer_changes.one([customer.id], profile=True))
    return customer_reads(session, [customer])[0]


def get_customers(
    session: Session, customer_ids: Sequence[str], *, identities: bool = True
) -> dict[str, CustomerRead]:
    """Many profiles at once (ids as stored, not followed through merges); without
    `identities`, `anonymous_ids` stays empty and a query is saved (messages need none)."""
    found = list(repository.profile_rows(session, customer_ids).values())
    return {read.id: read for read in customer_reads(session, found, identities=identities)}


def time_zones(session: Session, customer_ids: Sequence[str]) -> dict[str, str | None]:
    """Each customer's IANA time zone (None when unknown), by id; missing ids are left out."""
    return repository.time_zones(session, customer_ids)


def find_by_phone(session: Session, phone: str) -> str | None:
    """The customer with this E.164 phone number; the most recently updated one if several."""
    return repository.get_id_by_phone(session, phone)


def recent_events(
    session: Session, customer_ids: Sequence[str], *, name: str, since: datetime
) -> list[tuple[str, EventRead]]:
    """(customer id, event) of events named `name` at or after `since` (via the name index)."""
    found = repository.events_named(session, customer_ids, name, since)
    return [(event.customer_id, event_read(event)) for event in found]


def find_by_identity(
    session: Session, *, user_id: str | None, anonymous_id: str | None
) -> str | None:
    """The customer a tracking userId (first) or anonymousId belongs to."""
    keys = []
    if user_id:
        keys.append((IdentityKind.USER_ID, user_id))
    if anonymous_id:
        keys.append((IdentityKind.ANONYMOUS_ID, anonymous_id))
    found = repository.load_identities(session, keys)
    for key in keys:
        if key in found:
            return found[key][0]
    return None


def consent_statuses(
    session: Session, customer_ids: Sequence[str]
) -> dict[str, dict[tuple[str, str], str]]:
    """Each customer's consents as {(channel, topic): status}, without loading profiles."""
    found: dict[str, dict[tuple[str, str], str]] = {}
    for customer_id, channel, topic, status in repository.consent_statuses(session, customer_ids):
        found.setdefault(customer_id, {})[(str(channel), topic)] = str(status)
    return found
