"""Profile verbs: apply identify data, consents, merges, trait edits, id resolution."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.customers import changes, repository, rules
from regulars.customers.models import Consent, Customer
from regulars.customers.rules import (
    PROFILE_FIELD_NAMES,
    PROFILE_STATE_FIELDS,
    ConsentChangeIn,
    MessageInvalid,
    ProfileFields,
    ProfileState,
    consent_changes,
    merge_traits,
    profile_fields,
)
from regulars.errors import NotFound, ValidationFailed
from regulars.kit import clock


def apply_identify(
    customer: Customer, traits: Mapping[str, Any], fields: ProfileFields, *, at: datetime
) -> None:
    """Identify data on one loaded profile, newest wins (rules.apply_identify)."""
    state = ProfileState(**{name: getattr(customer, name) for name in PROFILE_STATE_FIELDS})
    rules.apply_identify(state, traits, fields, at=at)
    for name in PROFILE_STATE_FIELDS:
        setattr(customer, name, getattr(state, name))
    customer.updated_at = clock.now()


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
    merged_facts = repository.lock_facts(session, {merged_id}).get(merged_id)
    if merged_facts is not None:
        repository.add_facts(session, {into: merged_facts})
    repository.add_event_counts(
        session,
        [
            {
                "customer_id": into,
                "event_name": c.event_name,
                "count": c.count,
                "last_at": c.last_at,
            }
            for c in repository.event_counts_for(session, [merged_id])
        ],
    )
    _merge_consents(session, merged_id, into=into)
    repository.move_memberships(session, merged_id=merged_id, survivor_id=into, at=at)
    repository.move_rows(session, merged_id=merged_id, survivor_id=into)
    repository.record_merge(session, merged_id=merged_id, survivor_id=into, reason=reason, at=at)
    session.flush()
    changes.publish_removal(session, merged_id, into)
    external_id = merged.external_id
    repository.erase_rows(session, merged_id)  # what is left: its facts, counts, consents
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


def _merge_profile(survivor: Customer, merged: Customer, *, external_id: str | None) -> None:
    """The profile written last supplies its values; the other fills what is missing."""
    epoch = survivor.created_at.min.replace(tzinfo=survivor.created_at.tzinfo)
    merged_is_newer = (merged.traits_updated_at or epoch) > (survivor.traits_updated_at or epoch)
    survivor.traits = merge_traits(
        survivor.traits, merged.traits, incoming_is_newer=merged_is_newer
    )
    for name in PROFILE_FIELD_NAMES:
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
    apply_identify(customer, values, fields, at=at)
    if consents:
        set_consents(session, customer_id, consents, source="api", at=at)
    session.flush()
    changes.publish(session, changes.one([customer_id], profile=True, consents=bool(consents)))
    return customer
