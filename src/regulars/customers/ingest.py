"""The ingestion engine: a batch of Segment-spec messages stored set-based.

Identities of the whole batch are looked up at once and resolved in message order in memory;
the batch's new profiles, events, facts and counts are then written in a few statements.
It flushes; the boundary commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.customers import changes, repository
from regulars.customers.changes import CustomerChange
from regulars.customers.models import EventType, Group, IdentityKind
from regulars.customers.profiles import merge, set_consents
from regulars.customers.repository import IdentityKey
from regulars.customers.rules import (
    Facts,
    Message,
    MessageInvalid,
    apply_identify,
    changed_fields,
    merge_traits,
    parse_message,
)
from regulars.customers.schemas import IngestResult, Rejection
from regulars.kit import clock
from regulars.kit.ids import new_id


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A batch validated and deduplicated, ready to store: the part of ingestion that needs no
    database, so a server can do it before taking the write lock."""

    messages: list[Message]
    rejected: list[Rejection]
    duplicates: int
    received_at: datetime


def prepare(messages: Sequence[object], *, received_at: datetime | None = None) -> PreparedBatch:
    """Validate each message (a rejection says why) and drop repeats of a messageId."""
    received_at = received_at or clock.now()
    result = IngestResult()
    parsed = _parse_all(messages, received_at=received_at, result=result)
    fresh = _drop_duplicates(parsed, result=result)
    return PreparedBatch(fresh, result.rejected, result.duplicates, received_at)


def ingest(
    session: Session,
    messages: Sequence[object],
    *,
    source: str,
    received_at: datetime | None = None,
) -> IngestResult:
    """Validate and store a batch; invalid messages are rejected one by one, the rest is kept."""
    return store(session, prepare(messages, received_at=received_at), source=source)


def store(session: Session, batch: PreparedBatch, *, source: str) -> IngestResult:
    """Store a prepared batch: identities, events, profiles, groups, facts; flushes only."""
    result = IngestResult(duplicates=batch.duplicates, rejected=list(batch.rejected))
    fresh, received_at = batch.messages, batch.received_at
    if not fresh:
        return result
    resolver = _IdentityResolver(session, received_at=received_at)
    resolver.preload(fresh)
    owners = [resolver.resolve(message) for message in fresh]
    resolver.flush_new_profiles()
    rows = [
        _event_row(message, resolver.final(owner), source=source, received_at=received_at)
        for message, owner in zip(fresh, owners, strict=True)
    ]
    inserted = repository.insert_events(session, rows)
    stored = [
        (m, resolver.final(o))
        for m, o in zip(fresh, owners, strict=True)
        if m.message_id in inserted
    ]
    result.duplicates += len(fresh) - len(stored)
    result.accepted = len(stored)
    _apply_profiles(session, stored, source=source)
    _apply_groups(session, stored)
    _apply_facts(session, stored)
    fresh_or_merged = {resolver.final(c) for c in (*resolver.created, *resolver.merged_into)}
    changes.publish(session, _changes_of(stored, everything=fresh_or_merged))
    changes.publish_events(
        session,
        [
            changes.StoredEvent(owner, message.name, message.properties, message.timestamp)
            for message, owner in stored
            if message.name
        ],
    )
    return result


def _changes_of(
    stored: list[tuple[Message, str]], *, everything: Iterable[str]
) -> dict[str, CustomerChange]:
    """What the batch changed per customer; every stored event moves facts (last seen). A new
    profile, or a merge survivor, is new to every rule: "everything" changed."""
    found: dict[str, CustomerChange] = {}
    for message, owner in stored:
        change = found.setdefault(owner, CustomerChange(facts=True))
        if message.name:
            change.event_names.add(message.name)
        if message.type is EventType.IDENTIFY:
            change.profile = True
            change.consents |= bool(message.consents)
        elif message.type is EventType.GROUP:
            change.groups = True
    for customer_id in everything:
        found.setdefault(customer_id, CustomerChange()).everything = True
    return found


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


def _drop_duplicates(parsed: list[Message], *, result: IngestResult) -> list[Message]:
    """A messageId repeated inside the batch is applied once. One stored earlier is skipped by
    the events' unique constraint; resolving its identities again changes nothing, since they
    were all linked the first time."""
    seen: set[str] = set()
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


class _IdentityResolver:
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
        self.new_profiles: dict[str, dict[str, Any]] = {}
        self.new_identities: list[dict[str, Any]] = []
        self.created: set[str] = set()  # every profile this batch created

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
        for key, (owner, external_id) in repository.load_identities(self.session, keys).items():
            self.owners[key] = owner
            self.external[owner] = external_id

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
        if owner in self.new_profiles:
            self.new_profiles[owner]["external_id"] = value
        else:
            repository.set_external_id(self.session, owner, value)

    def _new_profile(self) -> str:
        customer_id = new_id()
        self.external[customer_id] = None
        self.new_profiles[customer_id] = {
            "id": customer_id,
            "external_id": None,
            "traits": {},
            "created_at": self.now,
            "updated_at": self.now,
        }
        return customer_id

    def flush_new_profiles(self) -> None:
        self.created.update(self.new_profiles)
        repository.add_customers(self.session, list(self.new_profiles.values()))
        repository.add_identities(
            self.session,
            [{**row, "customer_id": self.final(row["customer_id"])} for row in self.new_identities],
        )
        self.new_profiles, self.new_identities = {}, []

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
    profiles = repository.profile_states(session, {owner for _, owner in identifies})
    before = {owner: replace(state) for owner, state in profiles.items()}
    for message, owner in identifies:
        apply_identify(profiles[owner], message.traits, message.profile, at=message.timestamp)
        if message.consents:
            set_consents(session, owner, message.consents, source=source, at=message.timestamp)
    changed = {owner: changed_fields(before[owner], state) for owner, state in profiles.items()}
    repository.save_profile_changes(session, changed, updated_at=clock.now())


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
    """Add the batch's events to each customer's facts: one upsert, no read."""
    tracked = set(get_settings().tracked_events)
    deltas: dict[str, Facts] = {}
    counts: dict[tuple[str, str], tuple[int, datetime]] = {}
    for message, owner in stored:
        delta = deltas.get(owner)
        if delta is None:
            delta = deltas[owner] = Facts()
        delta.observe(message.type, message.name, message.properties, message.timestamp)
        if message.type is EventType.TRACK and message.name in tracked:
            count, last_at = counts.get((owner, message.name), (0, message.timestamp))
            counts[(owner, message.name)] = (count + 1, max(last_at, message.timestamp))
    repository.add_facts(session, deltas)
    repository.add_event_counts(
        session,
        [
            {"customer_id": owner, "event_name": name, "count": count, "last_at": last_at}
            for (owner, name), (count, last_at) in counts.items()
        ],
    )
