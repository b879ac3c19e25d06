"""The customers domain's verbs: ingest, merge, set consents, update traits.

`ingest` takes a batch of Segment-spec messages and stores it set-based: identities of the whole
batch are looked up at once, resolved in order in memory, and the batch's new profiles, events,
facts and counts are written in a few statements. Services flush; the boundary commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.customers import repository
from regulars.customers.models import (
    Consent,
    Customer,
    EventType,
    Group,
    IdentityKind,
)
from regulars.customers.repository import IdentityKey
from regulars.customers.rules import (
    ConsentChangeIn,
    Message,
    MessageInvalid,
    ProfileFields,
    merge_traits,
    parse_message,
)
from regulars.customers.schemas import IngestResult, Rejection
from regulars.kit import clock
from regulars.kit.ids import new_id


def ingest(
    session: Session,
    messages: Sequence[object],
    *,
    source: str,
    received_at: datetime | None = None,
) -> IngestResult:
    """Validate and store a batch; invalid messages are rejected one by one, the rest is kept."""
    received_at = received_at or clock.now()
    result = IngestResult()
    parsed = _parse_all(messages, received_at=received_at, result=result)
    fresh = _drop_duplicates(session, parsed, source=source, result=result)
    if not fresh:
        return result
    batch = _Batch(session, received_at=received_at)
    batch.preload(fresh)
    owners = [batch.resolve(message) for message in fresh]
    batch.flush_new_profiles()
    rows = [
        _event_row(message, batch.final(owner), source=source, received_at=received_at)
        for message, owner in zip(fresh, owners, strict=True)
    ]
    inserted = repository.insert_events(session, rows)
    stored = [
        (m, batch.final(o)) for m, o in zip(fresh, owners, strict=True) if m.message_id in inserted
    ]
    result.duplicates += len(fresh) - len(stored)
    result.accepted = len(stored)
    _apply_profiles(session, stored, source=source)
    _apply_groups(session, stored)
    _apply_facts(session, stored)
    return result


def _parse_all(
    messages: Sequence[object], *, received_at: datetime, result: IngestResult
) -> list[Message]:
    settings = get_settings()
    parsed: list[Message] = []
    for index, raw in enumerate(messages):
        try:
            parsed.append(
                parse_message(
                    raw,
                    received_at=received_at,
                    max_bytes=settings.max_event_bytes,
                    phone_region=settings.default_phone_region,
                )
            )
        except MessageInvalid as exc:
            result.rejected.append(Rejection(index=index, code=exc.code, reason=exc.reason))
    return parsed


def _drop_duplicates(
    session: Session, parsed: list[Message], *, source: str, result: IngestResult
) -> list[Message]:
    """A messageId seen before (in this batch or stored) is acknowledged and not applied again."""
    seen = repository.existing_message_ids(session, source, [m.message_id for m in parsed])
    fresh: list[Message] = []
    for message in parsed:
        if message.message_id in seen:
            result.duplicates += 1
            continue
        seen.add(message.message_id)
        fresh.append(message)
    return fresh


def _event_row(
    message: Message, customer_id: str, *, source: str, received_at: datetime
) -> dict[str, Any]:
    properties = message.traits if message.type is EventType.IDENTIFY else message.properties
    if message.type is EventType.GROUP:
        properties = {"groupId": message.group_id, "traits": message.traits}
    elif message.type is EventType.ALIAS:
        properties = {"previousId": message.previous_id}
    return {
        "customer_id": customer_id,
        "source": source,
        "message_id": message.message_id,
        "type": message.type.value,
        "name": message.name,
        "properties": properties,
        "context": message.context,
        "timestamp": message.timestamp,
        "received_at": received_at,
        "sent_at": message.sent_at,
    }


class _Batch:
    """Identity resolution for one batch, in memory, in message order.

    New profiles are written in one go at the end; a merge (rare) flushes them first and then
    runs at once, and `final` maps every profile of the batch to the one that survived.
    """

    def __init__(self, session: Session, *, received_at: datetime) -> None:
        self.session = session
        self.now = received_at
        self.owners: dict[IdentityKey, str] = {}
        self.external: dict[str, str | None] = {}
        self.merged_into: dict[str, str] = {}
        self.new_profiles: list[dict[str, Any]] = []
        self.new_identities: list[dict[str, Any]] = []

    def resolve(self, message: Message) -> str:
        user = (IdentityKind.USER_ID, message.user_id) if message.user_id else None
        anon = (IdentityKind.ANONYMOUS_ID, message.anonymous_id) if message.anonymous_id else None
        owner = self._link(user, anon)
        if message.type is EventType.ALIAS and message.previous_id:
            owner = self._alias(message.previous_id, owner)
        return owner

    def preload(self, messages: Sequence[Message]) -> None:
        """Look up every identifier of the batch in one round trip, not one per message."""
        keys: set[IdentityKey] = set()
        for m in messages:
            for value in (m.user_id, m.previous_id):
                if value:
                    keys.add((IdentityKind.USER_ID, value))
            for value in (m.anonymous_id, m.previous_id):
                if value:
                    keys.add((IdentityKind.ANONYMOUS_ID, value))
        self.owners.update(repository.load_identities(self.session, keys))
        owners = set(self.owners.values())
        self.external.update(repository.external_ids(self.session, owners))

    def _owner(self, key: IdentityKey | None) -> str | None:
        return self.final(self.owners[key]) if key and key in self.owners else None

    def _link(self, user: IdentityKey | None, anon: IdentityKey | None) -> str:
        by_user, by_anon = self._owner(user), self._owner(anon)
        if user and by_anon and by_anon != by_user and self.external.get(by_anon) is not None:
            # The device belonged to another known person: keep the two people apart.
            return by_user or self._claimed(user, self._new_profile())
        if by_user and by_anon and by_user != by_anon:
            return self.merge(by_anon, into=by_user, reason="identify")
        owner = by_user or by_anon or self._new_profile()
        if user and not by_user:
            self._claimed(user, owner)
        if anon and not by_anon:
            self._claimed(anon, owner)
        return owner

    def _alias(self, previous_id: str, owner: str) -> str:
        previous = self._owner((IdentityKind.USER_ID, previous_id)) or self._owner(
            (IdentityKind.ANONYMOUS_ID, previous_id)
        )
        if previous is None:
            return self._claimed((IdentityKind.ANONYMOUS_ID, previous_id), owner)
        if previous != owner:
            return self.merge(previous, into=owner, reason="alias")
        return owner

    def _claimed(self, key: IdentityKey, owner: str) -> str:
        kind, value = key
        self.owners[key] = owner
        self.new_identities.append(
            {"kind": kind.value, "value": value, "customer_id": owner, "created_at": self.now}
        )
        if kind is IdentityKind.USER_ID and self.external.get(owner) is None:
            self.external[owner] = value
            self._set_external(owner, value)
        return owner

    def _set_external(self, owner: str, value: str) -> None:
        for row in self.new_profiles:
            if row["id"] == owner:
                row["external_id"] = value
                return
        repository.set_external_id(self.session, owner, value)

    def _new_profile(self) -> str:
        customer_id = new_id()
        self.external[customer_id] = None
        self.new_profiles.append(
            {
                "id": customer_id,
                "external_id": None,
                "traits": {},
                "created_at": self.now,
                "updated_at": self.now,
            }
        )
        return customer_id

    def flush_new_profiles(self) -> None:
        repository.add_customers(self.session, self.new_profiles)
        repository.add_identities(
            self.session,
            [{**row, "customer_id": self.final(row["customer_id"])} for row in self.new_identities],
        )
        self.new_profiles, self.new_identities = [], []

    def merge(self, merged_id: str, *, into: str, reason: str) -> str:
        self.flush_new_profiles()
        merge(self.session, merged_id, into=into, reason=reason, at=self.now)
        self.merged_into[merged_id] = into
        if self.external.get(into) is None:
            self.external[into] = self.external.get(merged_id)
        return into

    def final(self, customer_id: str) -> str:
        while customer_id in self.merged_into:
            customer_id = self.merged_into[customer_id]
        return customer_id


# --- what a stored batch changes ---


def _apply_profiles(session: Session, stored: list[tuple[Message, str]], *, source: str) -> None:
    identifies = sorted(
        (pair for pair in stored if pair[0].type is EventType.IDENTIFY),
        key=lambda pair: pair[0].timestamp,
    )
    if not identifies:
        return
    customers = repository.get_many(session, {owner for _, owner in identifies})
    for message, owner in identifies:
        _apply_identify(customers[owner], message.traits, message.profile, at=message.timestamp)
        if message.consents:
            set_consents(session, owner, message.consents, source=source, at=message.timestamp)


def _apply_identify(
    customer: Customer, traits: Mapping[str, Any], fields: ProfileFields, *, at: datetime
) -> None:
    """Newest wins: data newer than the profile's overwrites it; older data only fills gaps."""
    newer = customer.traits_updated_at is None or at >= customer.traits_updated_at
    customer.traits = merge_traits(customer.traits, traits, incoming_is_newer=newer)
    for name, value in fields.given().items():
        if newer or getattr(customer, name) is None:
            setattr(customer, name, value)
    if newer:
        customer.traits_updated_at = at
    customer.updated_at = clock.now()


def _apply_groups(session: Session, stored: list[tuple[Message, str]]) -> None:
    for message, owner in stored:
        if message.type is not EventType.GROUP or message.group_id is None:
            continue
        group = repository.get_group_by_key(session, message.group_id)
        if group is None:
            group = Group(
                id=new_id(),
                group_key=message.group_id,
                traits={},
                created_at=message.timestamp,
                updated_at=message.timestamp,
            )
            session.add(group)
        newer = message.timestamp >= group.updated_at
        group.traits = merge_traits(group.traits, message.traits, incoming_is_newer=newer)
        group.updated_at = max(group.updated_at, message.timestamp)
        session.flush()
        repository.add_membership(
            session, group_id=group.id, customer_id=owner, at=message.timestamp
        )


def _apply_facts(session: Session, stored: list[tuple[Message, str]]) -> None:
    tracked = set(get_settings().tracked_events)
    facts = repository.lock_facts(session, {owner for _, owner in stored})
    counts: dict[tuple[str, str], tuple[int, datetime]] = {}
    for message, owner in stored:
        facts[owner].observe(message.type, message.name, message.properties, message.timestamp)
        if message.type is EventType.TRACK and message.name in tracked:
            count, last_at = counts.get((owner, message.name), (0, message.timestamp))
            counts[(owner, message.name)] = (count + 1, max(last_at, message.timestamp))
    repository.save_facts(session, facts)
    repository.add_event_counts(
        session,
        [
            {"customer_id": owner, "event_name": name, "count": count, "last_at": last_at}
            for (owner, name), (count, last_at) in counts.items()
        ],
    )


# --- consents ---


def set_consents(
    session: Session,
    customer_id: str,
    changes: Sequence[ConsentChangeIn],
    *,
    source: str,
    at: datetime | None = None,
) -> None:
    """Apply consent changes; each change of status is kept in the history with its source."""
    at = at or clock.now()
    current = {(c.channel, c.topic): c for c in repository.consents_of(session, [customer_id])}
    history: list[dict[str, Any]] = []
    for change in changes:
        consent = current.get((change.channel, change.topic))
        if consent is not None and (consent.status == change.status or consent.updated_at > at):
            continue
        if consent is None:
            consent = Consent(customer_id=customer_id, channel=change.channel, topic=change.topic)
            session.add(consent)
            current[(change.channel, change.topic)] = consent
        consent.status, consent.source, consent.updated_at = change.status, source, at
        history.append(
            {
                "customer_id": customer_id,
                "channel": change.channel.value,
                "topic": change.topic,
                "status": change.status.value,
                "source": source,
                "changed_at": at,
            }
        )
    session.flush()
    repository.add_consent_changes(session, history)


# --- merges ---


def merge(session: Session, merged_id: str, *, into: str, reason: str, at: datetime) -> None:
    """Fold one profile into another: timeline, identities, facts, consents, groups, traits.

    The merged id resolves to the survivor forever (customer_merges)."""
    customers = repository.get_many(session, {merged_id, into})
    merged, survivor = customers[merged_id], customers[into]
    facts = repository.lock_facts(session, {merged_id, into})
    facts[into].absorb(facts[merged_id])
    repository.save_facts(session, {into: facts[into]})
    repository.add_event_counts(
        session,
        [
            {
                "customer_id": into,
                "event_name": c.event_name,
                "count": c.count,
                "last_at": c.last_at,
            }
            for c in repository.event_counts_of(session, merged_id)
        ],
    )
    _merge_consents(session, merged_id, into=into)
    repository.move_memberships(session, merged_id=merged_id, survivor_id=into, at=at)
    repository.move_rows(session, merged_id=merged_id, survivor_id=into)
    repository.record_merge(session, merged_id=merged_id, survivor_id=into, reason=reason, at=at)
    session.flush()
    external_id = merged.external_id
    repository.delete_customer(session, merged_id)
    session.expunge(merged)
    _merge_profile(survivor, merged, external_id=external_id)
    session.flush()


def _merge_consents(session: Session, merged_id: str, *, into: str) -> None:
    consents = repository.consents_of(session, [merged_id, into])
    kept = {(c.channel, c.topic): c for c in consents if c.customer_id == into}
    for consent in (c for c in consents if c.customer_id == merged_id):
        mine = kept.get((consent.channel, consent.topic))
        if mine is None:
            session.add(
                Consent(
                    customer_id=into,
                    channel=consent.channel,
                    topic=consent.topic,
                    status=consent.status,
                    source=consent.source,
                    updated_at=consent.updated_at,
                )
            )
        elif mine.updated_at < consent.updated_at:
            mine.status, mine.source = consent.status, consent.source
            mine.updated_at = consent.updated_at
    session.flush()


_PROFILE_FIELDS = ("email", "phone", "first_name", "last_name", "locale", "timezone")


def _merge_profile(survivor: Customer, merged: Customer, *, external_id: str | None) -> None:
    """The profile written last supplies its values; the other fills what is missing."""
    epoch = survivor.created_at.min.replace(tzinfo=survivor.created_at.tzinfo)
    merged_is_newer = (merged.traits_updated_at or epoch) > (survivor.traits_updated_at or epoch)
    survivor.traits = merge_traits(
        survivor.traits, merged.traits, incoming_is_newer=merged_is_newer
    )
    for name in _PROFILE_FIELDS:
        theirs = getattr(merged, name)
        if theirs is not None and (merged_is_newer or getattr(survivor, name) is None):
            setattr(survivor, name, theirs)
    if merged_is_newer:
        survivor.traits_updated_at = merged.traits_updated_at
    survivor.external_id = survivor.external_id or external_id
    survivor.created_at = min(survivor.created_at, merged.created_at)
    survivor.updated_at = clock.now()


# --- profile edits and lookups ---


def resolve_id(session: Session, customer_id: str) -> str | None:
    """The id of the profile `customer_id` is or was merged into; None when unknown."""
    if repository.get(session, customer_id) is not None:
        return customer_id
    return repository.survivor_of(session, customer_id)


def update_traits(
    session: Session, customer_id: str, traits: Mapping[str, Any], *, at: datetime | None = None
) -> Customer:
    """Set traits (and the built-in fields they carry) as an identify call would, now."""
    from regulars.customers.rules import consent_changes, profile_fields
    from regulars.errors import NotFound, ValidationFailed

    at = at or clock.now()
    customer = repository.get(session, customer_id)
    if customer is None:
        raise NotFound(f"customer {customer_id} not found")
    values = dict(traits)
    try:
        consents = consent_changes(values.pop("consents", None))
        fields = profile_fields(values, {}, get_settings().default_phone_region)
    except MessageInvalid as exc:
        raise ValidationFailed(exc.reason, code=exc.code) from exc
    _apply_identify(customer, values, fields, at=at)
    if consents:
        set_consents(session, customer_id, consents, source="api", at=at)
    session.flush()
    return customer


# --- reads, export, erase ---

from collections import defaultdict as _defaultdict  # noqa: E402
from datetime import datetime as _datetime  # noqa: E402

from regulars.customers.models import (  # noqa: E402
    CustomerEventCount,
    CustomerFacts,
    Erasure,
    Event,
    Identity,
)
from regulars.customers.models import IdentityKind as _IdentityKind  # noqa: E402
from regulars.customers.rules import ConsentChangeIn as _ConsentChangeIn  # noqa: E402
from regulars.customers.rules import MessageInvalid as _MessageInvalid  # noqa: E402
from regulars.customers.rules import normalise_email as _normalise_email  # noqa: E402
from regulars.customers.schemas import (  # noqa: E402
    ConsentChangeRead,
    ConsentRead,
    ConsentUpdate,
    CustomerExport,
    CustomerPage,
    CustomerQuery,
    CustomerRead,
    CustomerUpdate,
    ErasureRead,
    EventCountRead,
    EventPage,
    EventRead,
    FactsRead,
    IdentityRead,
    MembershipRead,
    MergeRead,
    average,
    money,
)
from regulars.errors import Conflict as _Conflict  # noqa: E402
from regulars.errors import ValidationFailed as _ValidationFailed  # noqa: E402
from regulars.kit.pagination import decode_cursor, encode_cursor  # noqa: E402


def _facts_read(facts: CustomerFacts | None, counts: dict[str, int]) -> FactsRead:
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


def _consent_read(consent: Consent) -> ConsentRead:
    return ConsentRead(
        channel=consent.channel,
        topic=consent.topic,
        status=consent.status,
        source=consent.source,
        updated_at=consent.updated_at,
    )


def _customer_reads(session: Session, customers: Sequence[Customer]) -> list[CustomerRead]:
    """Profiles with identities, facts, counts and consents: five queries for a whole page."""
    ids = [customer.id for customer in customers]
    anonymous_ids: dict[str, list[str]] = _defaultdict(list)
    for identity in sorted(repository.identities_of(session, ids), key=lambda i: i.value):
        if identity.kind == _IdentityKind.ANONYMOUS_ID:
            anonymous_ids[identity.customer_id].append(identity.value)
    facts = repository.facts_for(session, ids)
    counts: dict[str, dict[str, int]] = _defaultdict(dict)
    for row in repository.event_counts_for(session, ids):
        counts[row.customer_id][row.event_name] = row.count
    consents: dict[str, list[ConsentRead]] = _defaultdict(list)
    for consent in sorted(repository.consents_of(session, ids), key=lambda c: (c.channel, c.topic)):
        consents[consent.customer_id].append(_consent_read(consent))
    return [
        CustomerRead(
            id=c.id,
            external_id=c.external_id,
            anonymous_ids=anonymous_ids[c.id],
            email=c.email,
            phone=c.phone,
            first_name=c.first_name,
            last_name=c.last_name,
            timezone=c.timezone,
            locale=c.locale,
            traits=c.traits,
            facts=_facts_read(facts.get(c.id), counts[c.id]),
            consents=consents[c.id],
            created_at=c.created_at,
            updated_at=c.updated_at,
        )
        for c in customers
    ]


def _live(session: Session, customer_id: str) -> Customer | None:
    """The profile behind an id, following merges (a merged-away id answers the survivor)."""
    resolved = resolve_id(session, customer_id)
    return None if resolved is None else repository.get(session, resolved)


def get_customer(session: Session, customer_id: str) -> CustomerRead | None:
    customer = _live(session, customer_id)
    return None if customer is None else _customer_reads(session, [customer])[0]


def list_customers(
    session: Session, query: CustomerQuery, *, cursor: str | None, limit: int
) -> CustomerPage:
    after_id = None
    if cursor is not None:
        (after_id,) = decode_cursor(cursor, 1)
        if not isinstance(after_id, str):
            raise _ValidationFailed("cursor is not valid: pass next_cursor back unchanged")
    rows = repository.list_customers(session, query, after_id=after_id, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].id) if more else None
    return CustomerPage(items=_customer_reads(session, rows), next_cursor=next_cursor)


def find_customer(session: Session, reference: str) -> str | None:
    """The customer an id, an external id or an email names (for people typing at a CLI)."""
    customer = _live(session, reference) or repository.get_by_external_id(session, reference)
    if customer is not None:
        return customer.id
    try:
        email = _normalise_email(reference)
    except _MessageInvalid:
        return None
    matches = repository.list_by_email(session, email)
    if len(matches) > 1:
        ids = ", ".join(match.id for match in matches)
        raise _Conflict(f"{len(matches)} customers have the email {email}: {ids}")
    return matches[0].id if matches else None


def _event_read(event: Event) -> EventRead:
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


def _event_position(cursor: str) -> tuple[_datetime, int]:
    at, event_id = decode_cursor(cursor, 2)
    try:
        if not isinstance(at, str) or isinstance(event_id, bool) or not isinstance(event_id, int):
            raise ValueError("wrong types")
        when = _datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("naive time")
    except ValueError as exc:
        raise _ValidationFailed("cursor is not valid: pass next_cursor back unchanged") from exc
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
    customer = _live(session, customer_id)
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
    return EventPage(items=[_event_read(e) for e in rows], next_cursor=next_cursor)


def list_consents(session: Session, customer_id: str) -> list[ConsentRead] | None:
    customer = _live(session, customer_id)
    if customer is None:
        return None
    found = repository.consents_of(session, [customer.id])
    return [_consent_read(c) for c in sorted(found, key=lambda c: (c.channel, c.topic))]


def change_consents(
    session: Session, customer_id: str, changes: Sequence[ConsentUpdate], *, source: str
) -> list[ConsentRead] | None:
    """Apply consent changes (each one kept in the history); answer every current consent."""
    customer = _live(session, customer_id)
    if customer is None:
        return None
    set_consents(
        session,
        customer.id,
        [_ConsentChangeIn(channel=c.channel, topic=c.topic, status=c.status) for c in changes],
        source=source,
    )
    session.flush()
    return list_consents(session, customer.id)


def update_profile(
    session: Session, customer_id: str, changes: CustomerUpdate, *, at: _datetime
) -> CustomerRead | None:
    """Change built-in fields and traits; the profile counts as updated at `at`."""
    customer = _live(session, customer_id)
    if customer is None:
        return None
    for field_name, value in changes.profile_changes().items():
        setattr(customer, field_name, value)
    customer.updated_at = at
    customer.traits_updated_at = at
    session.flush()
    if changes.traits is not None:
        customer = update_traits(session, customer.id, changes.traits, at=at)
    return _customer_reads(session, [customer])[0]


def export(session: Session, customer_id: str, *, at: _datetime) -> CustomerExport | None:
    """GDPR access: every row held about the customer, in one document."""
    customer = _live(session, customer_id)
    if customer is None:
        return None
    count_rows: list[CustomerEventCount] = repository.event_counts_for(session, [customer.id])
    return CustomerExport(
        exported_at=at,
        customer=_customer_reads(session, [customer])[0],
        identities=[
            IdentityRead(kind=i.kind, value=i.value, created_at=i.created_at)
            for i in sorted(repository.identities_of(session, [customer.id]), key=_identity_key)
        ],
        event_counts=[
            EventCountRead(event_name=r.event_name, count=r.count, last_at=r.last_at)
            for r in count_rows
        ],
        events=[_event_read(e) for e in repository.all_events(session, customer.id)],
        consent_history=[
            ConsentChangeRead(
                channel=c.channel,
                topic=c.topic,
                status=c.status,
                source=c.source,
                changed_at=c.changed_at,
            )
            for c in repository.consent_history(session, customer.id)
        ],
        group_memberships=[
            MembershipRead(
                group_id=g.id, group_key=g.group_key, group_traits=g.traits, joined_at=m.joined_at
            )
            for m, g in repository.memberships_of(session, customer.id)
        ],
        merges=[
            MergeRead(merged_id=m.merged_id, reason=m.reason, merged_at=m.merged_at)
            for m in repository.merges_into(session, customer.id)
        ],
    )


def _identity_key(identity: Identity) -> tuple[str, str]:
    return (identity.kind, identity.value)


def erase(
    session: Session, customer_id: str, *, requested_by: str, at: _datetime
) -> ErasureRead | None:
    """GDPR erasure: delete every row about the customer; keep an audit row with counts only."""
    customer = _live(session, customer_id)
    if customer is None:
        return None
    erased_id = customer.id
    session.expunge(customer)
    counts = repository.erase_rows(session, erased_id)
    audit = Erasure(
        customer_id=erased_id, requested_by=requested_by, rows_deleted=counts, erased_at=at
    )
    repository.add_erasure(session, audit)
    return ErasureRead(customer_id=erased_id, erased_at=at, rows_deleted=counts)
