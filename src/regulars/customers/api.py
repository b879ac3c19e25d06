"""REST API of the customers domain: profiles, timelines, consents, GDPR export and erasure.

Reads need an API key with scope read, changes scope write, export and erasure scope admin.
Each request is one `session_scope()`; reads use the read-only one.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Body, Depends, Query

from regulars.config import get_settings
from regulars.customers import service
from regulars.customers.models import EventType
from regulars.customers.rules import MessageInvalid, normalise_email, normalise_phone
from regulars.customers.schemas import (
    ConsentList,
    ConsentUpdate,
    CustomerExport,
    CustomerPage,
    CustomerQuery,
    CustomerRead,
    CustomerUpdate,
    ErasureRead,
    EventPage,
    TraitFilter,
)
from regulars.db import session_scope
from regulars.errors import NotFound, ValidationFailed
from regulars.identity.api import Caller, require
from regulars.identity.roles import Permission
from regulars.kit import clock

router = APIRouter(prefix="/api/customers", tags=["customers"])

can_read = require(Permission.CUSTOMERS_READ)
can_write = require(Permission.CUSTOMERS_WRITE)
is_admin = require(Permission.CUSTOMERS_ADMIN)

MAX_LIMIT = 200
CONSENT_SOURCE = "api"


def _missing(customer_id: str) -> NotFound:
    return NotFound(f"no customer with id {customer_id!r}", details={"id": customer_id})


def _utc(value: datetime | None) -> datetime | None:
    """Query times without an offset are read as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def parse_trait_filter(raw: str) -> TraitFilter:
    """`plan:pro` or `address.city:Berlin` (the value may itself contain colons)."""
    key, colon, value = raw.partition(":")
    path = tuple(key.split("."))
    if not colon or any(not part or '"' in part for part in path):
        raise ValidationFailed(
            f"trait filter {raw!r} must be key:value, nested keys with dots (address.city:Paris)",
            details={"trait": raw},
        )
    return TraitFilter(path=path, value=value)


def _customer_query(
    email: str | None,
    phone: str | None,
    external_id: str | None,
    trait: list[str],
    times: tuple[datetime | None, ...],
) -> CustomerQuery:
    try:
        email = None if email is None else normalise_email(email)
        phone = (
            None if phone is None else normalise_phone(phone, get_settings().default_phone_region)
        )
    except MessageInvalid as exc:
        raise ValidationFailed(exc.reason.removeprefix("traits."), code=exc.code) from exc
    created_after, created_before, seen_after, seen_before = (_utc(t) for t in times)
    return CustomerQuery(
        email=email,
        phone=phone,
        external_id=external_id,
        traits=tuple(parse_trait_filter(raw) for raw in trait),
        created_after=created_after,
        created_before=created_before,
        last_seen_after=seen_after,
        last_seen_before=seen_before,
    )


@router.get("", response_model=CustomerPage, summary="List and filter customers")
def list_customers(
    email: str | None = Query(None, description="Exact email (normalised first)."),
    phone: str | None = Query(None, description="Phone; normalised to E.164 first."),
    external_id: str | None = Query(None, description="The userId the customer is known by."),
    trait: list[str] = Query(
        default_factory=list, description="key:value, repeatable; nested keys with dots."
    ),
    created_after: datetime | None = Query(None),
    created_before: datetime | None = Query(None),
    last_seen_after: datetime | None = Query(None),
    last_seen_before: datetime | None = Query(None),
    cursor: str | None = Query(None, description="next_cursor of the previous page."),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    _caller: Caller = Depends(can_read),
) -> CustomerPage:
    query = _customer_query(
        email,
        phone,
        external_id,
        trait,
        (created_after, created_before, last_seen_after, last_seen_before),
    )
    with session_scope(readonly=True) as session:
        return service.list_customers(session, query, cursor=cursor, limit=limit)


@router.get("/{customer_id}", response_model=CustomerRead, summary="One customer")
def get_customer(customer_id: str, _caller: Caller = Depends(can_read)) -> CustomerRead:
    with session_scope(readonly=True) as session:
        found = service.get_customer(session, customer_id)
    if found is None:
        raise _missing(customer_id)
    return found


@router.patch("/{customer_id}", response_model=CustomerRead, summary="Change profile fields")
def update_customer(
    customer_id: str, changes: CustomerUpdate, _caller: Caller = Depends(can_write)
) -> CustomerRead:
    with session_scope() as session:
        updated = service.update_profile(session, customer_id, changes, at=clock.now())
        if updated is None:
            raise _missing(customer_id)
        return updated


@router.get("/{customer_id}/events", response_model=EventPage, summary="A customer's timeline")
def list_events(
    customer_id: str,
    type: EventType | None = Query(None, description="identify, track, page, ..."),
    name: str | None = Query(None, description="Event name, e.g. Order Completed."),
    cursor: str | None = Query(None, description="next_cursor of the previous page."),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    _caller: Caller = Depends(can_read),
) -> EventPage:
    with session_scope(readonly=True) as session:
        page = service.list_events(
            session, customer_id, type=type, name=name, cursor=cursor, limit=limit
        )
    if page is None:
        raise _missing(customer_id)
    return page


@router.get("/{customer_id}/consents", response_model=ConsentList, summary="Current consents")
def get_consents(customer_id: str, _caller: Caller = Depends(can_read)) -> ConsentList:
    with session_scope(readonly=True) as session:
        consents = service.list_consents(session, customer_id)
    if consents is None:
        raise _missing(customer_id)
    return ConsentList(items=consents)


@router.put("/{customer_id}/consents", response_model=ConsentList, summary="Change consents")
def put_consents(
    customer_id: str,
    changes: list[ConsentUpdate] = Body(..., max_length=100),
    _caller: Caller = Depends(can_write),
) -> ConsentList:
    with session_scope() as session:
        consents = service.change_consents(session, customer_id, changes, source=CONSENT_SOURCE)
        if consents is None:
            raise _missing(customer_id)
    return ConsentList(items=consents)


@router.get("/{customer_id}/export", response_model=CustomerExport, summary="GDPR access export")
def export_customer(customer_id: str, _caller: Caller = Depends(is_admin)) -> CustomerExport:
    with session_scope(readonly=True) as session:
        exported = service.export(session, customer_id, at=clock.now())
    if exported is None:
        raise _missing(customer_id)
    return exported


@router.delete("/{customer_id}", response_model=ErasureRead, summary="GDPR erasure")
def erase_customer(customer_id: str, caller: Caller = Depends(is_admin)) -> ErasureRead:
    with session_scope() as session:
        erased = service.erase(session, customer_id, requested_by=caller.label, at=clock.now())
        if erased is None:
            raise _missing(customer_id)
    return erased
