"""Small helpers for the customers tests: ingest in one transaction, read rows back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from regulars.customers import service
from regulars.customers.models import Customer, CustomerFacts, Event, Identity, IdentityKind
from regulars.customers.schemas import IngestResult
from regulars.db import session_scope


def ingest(messages: Sequence[object], *, source: str = "test") -> IngestResult:
    with session_scope() as session:
        return service.ingest(session, messages, source=source)


def owner_of(value: str, kind: IdentityKind = IdentityKind.USER_ID) -> str | None:
    with session_scope(readonly=True) as session:
        return session.scalar(
            select(Identity.customer_id).where(Identity.kind == kind, Identity.value == value)
        )


def customer(customer_id: str) -> Customer:
    with session_scope(readonly=True) as session:
        found = session.get(Customer, customer_id)
        assert found is not None, f"customer {customer_id} not found"
        return found


def facts(customer_id: str) -> CustomerFacts:
    with session_scope(readonly=True) as session:
        found = session.get(CustomerFacts, customer_id)
        assert found is not None
        return found


def events_of(customer_id: str) -> list[Event]:
    with session_scope(readonly=True) as session:
        return list(
            session.scalars(
                select(Event).where(Event.customer_id == customer_id).order_by(Event.timestamp)
            )
        )


def count(model: type[Any]) -> int:
    with session_scope(readonly=True) as session:
        return len(session.scalars(select(model)).all())
