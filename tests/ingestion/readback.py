"""Read what ingestion stored, to check it: profiles by userId, their events, all events."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from regulars.customers import repository
from regulars.customers.models import (
    Customer,
    CustomerFacts,
    Event,
    Group,
    GroupMembership,
    IdentityKind,
)
from regulars.db import session_scope


@dataclass(frozen=True)
class Profile:
    customer: Customer
    events: list[Event]
    facts: CustomerFacts
    group_keys: list[str]


def customer_id_of(kind: IdentityKind, value: str) -> str | None:
    with session_scope(readonly=True) as session:
        found = repository.load_identities(session, {(kind, value)}).get((kind, value))
        return None if found is None else found[0]


def profile_of(user_id: str) -> Profile:
    customer_id = customer_id_of(IdentityKind.USER_ID, user_id)
    assert customer_id is not None, f"no profile for userId {user_id!r}"
    with session_scope(readonly=True) as session:
        customer = session.get(Customer, customer_id)
        facts = session.get(CustomerFacts, customer_id)
        assert customer is not None
        assert facts is not None
        events = session.scalars(
            select(Event).where(Event.customer_id == customer_id).order_by(Event.id)
        )
        groups = session.scalars(
            select(Group.group_key)
            .join(GroupMembership, GroupMembership.group_id == Group.id)
            .where(GroupMembership.customer_id == customer_id)
        )
        profile = Profile(customer, list(events), facts, sorted(groups))
        session.expunge_all()  # keep the loaded values past the read-only rollback
        return profile


def all_events() -> list[Event]:
    with session_scope(readonly=True) as session:
        events = list(session.scalars(select(Event).order_by(Event.id)))
        session.expunge_all()
        return events


def count(model: type[Customer] | type[Event]) -> int:
    with session_scope(readonly=True) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0
