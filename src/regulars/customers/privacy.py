"""GDPR: export every row held about a customer; erase them, keeping an audit row."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from regulars.customers import changes, repository
from regulars.customers.models import CustomerEventCount, Erasure, Identity
from regulars.customers.reads import customer_reads, event_read, live
from regulars.customers.schemas import (
    ConsentChangeRead,
    CustomerExport,
    ErasureRead,
    EventCountRead,
    IdentityRead,
    MembershipRead,
    MergeRead,
)


def export(session: Session, customer_id: str, *, at: datetime) -> CustomerExport | None:
    """GDPR access: every row held about the customer, in one document."""
    customer = live(session, customer_id)
    if customer is None:
        return None
    count_rows: list[CustomerEventCount] = repository.event_counts_for(session, [customer.id])
    return CustomerExport(
        exported_at=at,
        customer=customer_reads(session, [customer])[0],
        identities=[
            IdentityRead(kind=i.kind, value=i.value, created_at=i.created_at)
            for i in sorted(repository.identities_of(session, [customer.id]), key=_identity_key)
        ],
        event_counts=[
            EventCountRead(event_name=r.event_name, count=r.count, last_at=r.last_at)
            for r in count_rows
        ],
        events=[event_read(e) for e in repository.all_events(session, customer.id)],
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
        held_elsewhere=changes.contributions(session, customer.id),
    )


def _identity_key(identity: Identity) -> tuple[str, str]:
    return (identity.kind, identity.value)


def erase(
    session: Session, customer_id: str, *, requested_by: str, at: datetime
) -> ErasureRead | None:
    """GDPR erasure: delete every row about the customer; keep an audit row with counts only."""
    customer = live(session, customer_id)
    if customer is None:
        return None
    erased_id = customer.id
    session.expunge(customer)
    changes.publish_removal(session, erased_id, None)
    counts = repository.erase_rows(session, erased_id)
    audit = Erasure(
        customer_id=erased_id, requested_by=requested_by, rows_deleted=counts, erased_at=at
    )
    repository.add_erasure(session, audit)
    return ErasureRead(customer_id=erased_id, erased_at=at, rows_deleted=counts)
