"""Shapes that cross the messages boundary: the API's requests and read models."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from regulars.messages.models import Category, DeliveryStatus, MessageChannel

KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,99}$"
LOCALE_PATTERN = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- templates ---


class TemplateWrite(_Strict):
    """A template's content per locale; saving it makes a new version."""

    name: str = Field(min_length=1, max_length=200)
    category: Category = Category.TRANSACTIONAL
    topic: str = Field(default="", max_length=100)
    strict: bool = True
    default_locale: str = Field(default="en", max_length=35)
    locales: dict[str, dict[str, Any]] = Field(min_length=1, max_length=50)

    @field_validator("default_locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        if not LOCALE_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a locale such as 'en' or 'de-DE'")
        return value

    @field_validator("locales")
    @classmethod
    def _locales(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for locale in value:
            if not LOCALE_PATTERN.match(locale):
                raise ValueError(f"{locale!r} is not a locale such as 'en' or 'de-DE'")
        return value


class TemplateRead(BaseModel):
    id: str
    key: str
    channel: MessageChannel
    name: str
    category: Category
    topic: str
    strict: bool
    default_locale: str
    version: int
    locales: dict[str, dict[str, Any]]
    created_at: datetime
    updated_at: datetime


class TemplateVersionRead(BaseModel):
    version: int
    locales: dict[str, dict[str, Any]]
    created_at: datetime


class PreviewRequest(_Strict):
    customer: str = Field(min_length=1, max_length=320)
    channel: MessageChannel | Literal["auto"] = "auto"
    locale: str | None = Field(default=None, max_length=35)
    event: dict[str, Any] = Field(default_factory=dict)


class VerdictRead(BaseModel):
    decision: Literal["send", "defer", "refuse"]
    reason: str | None
    message: str | None
    at: datetime | None


class PreviewRead(BaseModel):
    template: str
    channel: MessageChannel
    locale: str
    version: int
    content: dict[str, Any] | None
    error: str | None
    verdict: VerdictRead


# --- sending ---


class MessageCreate(_Strict):
    """POST /api/messages: one message to one customer."""

    customer: str = Field(min_length=1, max_length=320, description="id, external id or email")
    template: str | None = Field(default=None, pattern=KEY_PATTERN)
    content: dict[str, Any] | None = Field(
        default=None, description="inline content (the channel's template fields) instead"
    )
    channel: MessageChannel | Literal["auto"] = "auto"
    category: Category | None = None
    topic: str | None = Field(default=None, max_length=100)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    expires_at: datetime | None = None
    expires_in_seconds: int | None = Field(default=None, ge=1, le=90 * 24 * 3600)
    event: dict[str, Any] = Field(default_factory=dict)
    locale: str | None = Field(default=None, max_length=35)

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone, e.g. 2026-12-01T09:00:00Z")
        return value


class DeliveryRead(BaseModel):
    id: str
    customer_id: str
    channel: MessageChannel
    category: Category
    topic: str
    template: str | None
    template_version: int | None
    locale: str | None
    broadcast_id: str | None
    status: DeliveryStatus
    reason: str | None
    address: str | None
    provider: str | None
    provider_message_id: str | None
    attempts: int
    next_attempt_at: datetime | None
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    content: dict[str, Any] | None = None


class DeliveryPage(BaseModel):
    items: list[DeliveryRead]
    next_cursor: str | None


# --- broadcasts ---


class BroadcastCreate(_Strict):
    name: str = Field(min_length=1, max_length=200)
    template: str = Field(pattern=KEY_PATTERN)
    segment: str = Field(min_length=1, max_length=100)
    channel: MessageChannel | Literal["auto"] = "auto"
    send_at: datetime | None = None
    local_time: str | None = Field(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    throttle_per_minute: int | None = Field(default=None, ge=1, le=1_000_000)

    @field_validator("send_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone, e.g. 2026-12-01T09:00:00Z")
        return value


class BroadcastRead(BaseModel):
    id: str
    name: str
    template: str
    segment: str
    channel: str
    status: str
    send_at: datetime
    local_time: str | None
    throttle_per_minute: int | None
    audience: int
    progress: dict[str, int]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancelled_at: datetime | None


# --- providers, inbox, push ---


class ProviderWrite(_Strict):
    channel: MessageChannel
    kind: str = Field(min_length=1, max_length=32)
    config: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(default=0, ge=0, le=1000)
    enabled: bool = True
    rate_per_second: float | None = Field(default=None, gt=0, le=100_000)


class ProviderRead(BaseModel):
    name: str
    channel: MessageChannel
    kind: str
    priority: int
    enabled: bool
    rate_per_second: float | None
    config: dict[str, Any]  # secrets masked


class InboxItem(BaseModel):
    id: str
    delivery_id: str
    title: str
    body: str
    link: str | None
    created_at: datetime
    read_at: datetime | None


class InboxPage(BaseModel):
    items: list[InboxItem]
    unread_count: int
    next_cursor: str | None


class InboxRead(_Strict):
    ids: list[str] | None = Field(default=None, max_length=1000, description="None: all")


class PushSubscriptionRead(BaseModel):
    endpoint: str
    user_agent: str | None
    created_at: datetime


class PushSubscriptionKeys(_Strict):
    p256dh: str = Field(min_length=1, max_length=200)
    auth: str = Field(min_length=1, max_length=100)


class PushSubscriptionCreate(BaseModel):
    """What a browser's PushSubscription.toJSON() gives, plus who the visitor is."""

    model_config = ConfigDict(extra="ignore")

    endpoint: str = Field(min_length=1, max_length=2048, pattern=r"^https?://")
    keys: PushSubscriptionKeys
    user_id: str | None = Field(default=None, alias="userId", max_length=255)
    anonymous_id: str | None = Field(default=None, alias="anonymousId", max_length=255)
    user_agent: str | None = Field(default=None, alias="userAgent", max_length=500)
