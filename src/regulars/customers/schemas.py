"""Shapes that cross the customers boundary: ingestion results and the API's read models."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator

from regulars.config import get_settings
from regulars.customers.models import Channel, ConsentStatus, EventType, IdentityKind
from regulars.customers.rules import (
    MAX_ID_LENGTH,
    MAX_TOPIC_LENGTH,
    MessageInvalid,
    normalise_email,
    normalise_locale,
    normalise_phone,
    normalise_timezone,
)


@dataclass(frozen=True, slots=True)
class Rejection:
    """One message of a batch that was not stored, and why."""

    index: int
    code: str
    reason: str


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)


# --- read models of the REST API (customers/api.py) --------------------------------------------


CENT = Decimal("0.01")


def money(cents: int) -> float:
    """Cents as a JSON decimal number: 1999 -> 19.99 (exact when printed: shortest repr)."""
    return float(Decimal(cents) / 100)


def average(total_cents: int, count: int) -> float | None:
    if count == 0:
        return None
    return float((Decimal(total_cents) / 100 / count).quantize(CENT, rounding=ROUND_HALF_UP))


class FactsRead(BaseModel):
    orders_count: int
    revenue_total: float
    average_order_value: float | None
    first_order_at: datetime | None
    last_order_at: datetime | None
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    events_count: int
    refunds_count: int
    refunded_total: float
    event_counts: dict[str, int]


class ConsentRead(BaseModel):
    channel: Channel
    topic: str
    status: ConsentStatus
    source: str
    updated_at: datetime


class CustomerRead(BaseModel):
    id: str
    external_id: str | None
    anonymous_ids: list[str]
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    timezone: str | None
    locale: str | None
    traits: dict[str, Any]
    facts: FactsRead
    consents: list[ConsentRead]
    created_at: datetime
    updated_at: datetime


class CustomerPage(BaseModel):
    items: list[CustomerRead]
    next_cursor: str | None


class EventRead(BaseModel):
    id: int
    type: EventType
    name: str | None
    properties: dict[str, Any]
    context: dict[str, Any]
    timestamp: datetime
    received_at: datetime
    sent_at: datetime | None
    message_id: str
    source: str


class EventPage(BaseModel):
    items: list[EventRead]
    next_cursor: str | None


class ConsentList(BaseModel):
    items: list[ConsentRead]
    next_cursor: None = None  # every consent fits one page; the shape is the one of all lists


class ConsentUpdate(BaseModel):
    """One change of PUT /api/customers/{id}/consents; topic "" is the channel as a whole."""

    model_config = ConfigDict(extra="forbid")

    channel: Channel
    topic: Annotated[str, Field(max_length=MAX_TOPIC_LENGTH)] = ""
    status: ConsentStatus


def _field_error(exc: MessageInvalid) -> ValueError:
    return ValueError(exc.reason.removeprefix("traits."))


class CustomerUpdate(BaseModel):
    """PATCH /api/customers/{id}: only the fields sent change; null clears a field.

    `traits` are merged into the current ones key by key (a key set to null is removed).
    """

    model_config = ConfigDict(extra="forbid")

    traits: dict[str, Any] | None = None
    email: str | None = None
    phone: str | None = None
    first_name: Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)] | None = None
    last_name: Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)] | None = None
    locale: str | None = None
    timezone: str | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        try:
            return None if value is None else normalise_email(value)
        except MessageInvalid as exc:
            raise _field_error(exc) from exc

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        try:
            region = get_settings().default_phone_region
            return None if value is None else normalise_phone(value, region)
        except MessageInvalid as exc:
            raise _field_error(exc) from exc

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        try:
            return None if value is None else normalise_locale(value)
        except MessageInvalid as exc:
            raise _field_error(exc) from exc

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        try:
            return None if value is None else normalise_timezone(value)
        except MessageInvalid as exc:
            raise _field_error(exc) from exc

    def profile_changes(self) -> dict[str, str | None]:
        """The built-in fields that were sent (None for the ones sent as null)."""
        sent = self.model_fields_set - {"traits"}
        return {name: getattr(self, name) for name in sorted(sent)}


@dataclass(frozen=True, slots=True)
class TraitFilter:
    """`trait=plan:pro` or `trait=address.city:Berlin`: the trait, read as text, equals value."""

    path: tuple[str, ...]
    value: str


@dataclass(frozen=True, slots=True)
class CustomerQuery:
    email: str | None = None
    phone: str | None = None
    external_id: str | None = None
    traits: tuple[TraitFilter, ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None
    last_seen_after: datetime | None = None
    last_seen_before: datetime | None = None


class IdentityRead(BaseModel):
    kind: IdentityKind
    value: str
    created_at: datetime


class EventCountRead(BaseModel):
    event_name: str
    count: int
    last_at: datetime


class ConsentChangeRead(BaseModel):
    channel: Channel
    topic: str
    status: ConsentStatus
    source: str
    changed_at: datetime


class MembershipRead(BaseModel):
    group_id: str
    group_key: str
    group_traits: dict[str, Any]
    joined_at: datetime


class MergeRead(BaseModel):
    merged_id: str
    reason: str
    merged_at: datetime


class CustomerExport(BaseModel):
    """GDPR access: every row held about one customer."""

    exported_at: datetime
    customer: CustomerRead
    identities: list[IdentityRead]
    event_counts: list[EventCountRead]
    events: list[EventRead]
    consent_history: list[ConsentChangeRead]
    group_memberships: list[MembershipRead]
    merges: list[MergeRead]
    # What other domains hold about the customer: "deliveries", "segment_memberships", ...
    held_elsewhere: dict[str, list[SerializeAsAny[BaseModel]]] = Field(default_factory=dict)


class ErasureRead(BaseModel):
    """What DELETE /api/customers/{id} removed; the audit row keeps only these counts."""

    customer_id: str
    erased_at: datetime
    rows_deleted: dict[str, int]
