"""Pure rules of the customer data platform: parse a Segment message, validate profile fields,
turn money into cents, merge traits. No database here."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import orjson
import phonenumbers
from email_validator import EmailNotValidError, validate_email

from regulars.customers.models import Channel, ConsentStatus, EventType

MESSAGE_TYPES = {t.value for t in EventType if t is not EventType.SYSTEM}
MAX_ID_LENGTH = 255
MAX_TOPIC_LENGTH = 100
MAX_CENTS = 10**15  # a thousand billion in any currency: beyond it the number is a mistake
LOCALE_PATTERN = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
CONSENT_TRAIT = "consents"
ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")  # \u0000 not itself escaped
ORDER_COMPLETED = "Order Completed"
ORDER_REFUNDED = "Order Refunded"


class MessageInvalid(ValueError):
    """A message that cannot be stored; `code` is machine-readable, the text says what to fix."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ConsentChangeIn:
    channel: Channel
    topic: str
    status: ConsentStatus


PROFILE_FIELD_NAMES = ("email", "phone", "first_name", "last_name", "locale", "timezone")


@dataclass(slots=True)
class ProfileFields:
    """Built-in profile fields carried by identify traits (None: not given)."""

    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    locale: str | None = None
    timezone: str | None = None

    def given(self) -> dict[str, str]:
        return {k: v for k in PROFILE_FIELD_NAMES if (v := getattr(self, k)) is not None}


@dataclass(slots=True)
class Message:
    type: EventType
    message_id: str
    timestamp: datetime
    sent_at: datetime | None
    user_id: str | None = None
    anonymous_id: str | None = None
    previous_id: str | None = None
    group_id: str | None = None
    name: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    profile: ProfileFields = field(default_factory=ProfileFields)
    consents: list[ConsentChangeIn] = field(default_factory=list)


# --- parsing ---


def parse_message(
    raw: object, *, received_at: datetime, max_bytes: int, phone_region: str
) -> Message:
    """Validate one Segment-spec message and normalise it; raise MessageInvalid saying why."""
    if not isinstance(raw, Mapping):
        given = "null" if raw is None else type(raw).__name__
        raise MessageInvalid("invalid_message", f"a message must be a JSON object, not {given}")
    _check_size(raw, max_bytes)
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        allowed = ", ".join(sorted(MESSAGE_TYPES))
        raise MessageInvalid("invalid_type", f"type must be one of {allowed}")
    message = Message(
        type=EventType(kind),
        message_id=_optional_id(raw, "messageId") or f"auto-{uuid.uuid4()}",
        timestamp=received_at,
        sent_at=_optional_time(raw, "sentAt"),
        user_id=_optional_id(raw, "userId"),
        anonymous_id=_optional_id(raw, "anonymousId"),
        properties=_object(raw, "properties"),
        traits=_object(raw, "traits"),
        context=_object(raw, "context"),
    )
    message.timestamp = corrected_timestamp(
        _optional_time(raw, "timestamp"), message.sent_at, received_at
    )
    _parse_by_type(message, raw)
    if message.user_id is None and message.anonymous_id is None:
        raise MessageInvalid("missing_identity", "userId or anonymousId is required")
    if message.type is EventType.IDENTIFY:
        if not message.traits and isinstance(message.context.get("traits"), dict):
            message.traits = dict(message.context["traits"])  # RudderStack sends them there
        message.consents = consent_changes(message.traits.pop(CONSENT_TRAIT, None))
        message.profile = profile_fields(message.traits, message.context, phone_region)
    return message


def _parse_by_type(message: Message, raw: Mapping[str, Any]) -> None:
    if message.type is EventType.TRACK:
        message.name = _required_text(raw, "event")
        if message.name in (ORDER_COMPLETED, ORDER_REFUNDED):
            order_amount_cents(message.properties)  # refuse a malformed amount up front
    elif message.type in (EventType.PAGE, EventType.SCREEN):
        message.name = _optional_id(raw, "name")
    elif message.type is EventType.GROUP:
        message.group_id = _required_text(raw, "groupId")
    elif message.type is EventType.ALIAS:
        message.previous_id = _required_text(raw, "previousId")
        if message.user_id is None:
            raise MessageInvalid("missing_identity", "alias needs userId")


def _check_size(raw: Mapping[str, Any], max_bytes: int) -> None:
    try:
        encoded = orjson.dumps(raw)
    except TypeError as exc:  # non-string keys or values orjson cannot encode
        raise MessageInvalid("invalid_message", "message is not valid JSON data") from exc
    if len(encoded) > max_bytes:
        size = len(encoded)
        raise MessageInvalid("too_large", f"message is {size} bytes; the limit is {max_bytes}")
    if b"\\u0000" in encoded and ESCAPED_NUL.search(encoded):  # PostgreSQL can't store NUL
        raise MessageInvalid("invalid_message", "message must not contain NUL (\\u0000) characters")


def corrected_timestamp(
    timestamp: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """Segment's clock-skew correction: shift by receivedAt - sentAt when the client sent sentAt."""
    if timestamp is None:
        return received_at
    if sent_at is None:
        return timestamp
    try:
        return timestamp + (received_at - sent_at)
    except OverflowError as exc:
        raise MessageInvalid("invalid_timestamp", "timestamp and sentAt are out of range") from exc


def _optional_id(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MessageInvalid("invalid_field", f"{key} must be a string")
    text = str(value)
    if len(text) > MAX_ID_LENGTH:  # NUL was refused for the whole message already
        raise MessageInvalid("invalid_field", f"{key} must be at most {MAX_ID_LENGTH} characters")
    return text


def _required_text(raw: Mapping[str, Any], key: str) -> str:
    value = _optional_id(raw, key)
    if value is None:
        raise MessageInvalid("missing_field", f"{key} is required")
    return value


def _object(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MessageInvalid("invalid_field", f"{key} must be an object")
    return value


def _optional_time(raw: Mapping[str, Any], key: str) -> datetime | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MessageInvalid("invalid_timestamp", f"{key} must be an ISO 8601 string")
    return parse_time(value, key)


def parse_time(value: str, what: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MessageInvalid("invalid_timestamp", f"{what} is not an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if not 1970 <= parsed.year <= 9000:
        raise MessageInvalid("invalid_timestamp", f"{what} is out of range")
    return parsed.astimezone(UTC)


# --- profile fields ---

_TRAIT_NAMES = {
    "email": ("email",),
    "phone": ("phone",),
    "first_name": ("firstName", "first_name"),
    "last_name": ("lastName", "last_name"),
    "locale": ("locale",),
    "timezone": ("timezone", "timeZone"),
}


def profile_fields(
    traits: Mapping[str, Any], context: Mapping[str, Any], phone_region: str
) -> ProfileFields:
    """Read the built-in fields from identify traits (context.timezone/locale as fallbacks)."""
    found: dict[str, str] = {}
    for field_name, keys in _TRAIT_NAMES.items():
        for key in keys:
            value = traits.get(key)
            if isinstance(value, str) and value.strip():
                found[field_name] = value.strip()
                break
    for key in ("timezone", "locale"):
        value = context.get(key)
        if key not in found and isinstance(value, str) and value.strip():
            found[key] = value.strip()
    return ProfileFields(
        email=normalise_email(found["email"]) if "email" in found else None,
        phone=normalise_phone(found["phone"], phone_region) if "phone" in found else None,
        first_name=_bounded(found.get("first_name"), "firstName"),
        last_name=_bounded(found.get("last_name"), "lastName"),
        locale=normalise_locale(found["locale"]) if "locale" in found else None,
        timezone=normalise_timezone(found["timezone"]) if "timezone" in found else None,
    )


def _bounded(value: str | None, what: str) -> str | None:
    if value is not None and len(value) > MAX_ID_LENGTH:
        raise MessageInvalid("invalid_field", f"traits.{what} must be at most 255 characters")
    return value


@lru_cache(maxsize=65_536)  # the same people identify again and again; parsing is slow
def normalise_email(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise MessageInvalid("invalid_email", f"traits.email {value!r}: {exc}") from exc


@lru_cache(maxsize=65_536)
def normalise_phone(value: str, region: str) -> str:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise MessageInvalid("invalid_phone", f"traits.phone {value!r}: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise MessageInvalid(
            "invalid_phone",
            f"traits.phone {value!r} is not a valid number (give it in E.164, e.g. +14155552671)",
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


def normalise_timezone(value: str) -> str:
    if value not in _time_zones():
        raise MessageInvalid(
            "invalid_timezone",
            f"timezone {value!r} is not an IANA time zone (e.g. Europe/Berlin)",
        )
    return value


def normalise_locale(value: str) -> str:
    if not LOCALE_PATTERN.match(value) or len(value) > 35:
        raise MessageInvalid("invalid_locale", f"locale {value!r} is not a locale tag like de-DE")
    return value.replace("_", "-")


# --- consents and money ---


def consent_changes(value: object) -> list[ConsentChangeIn]:
    """`{"email": "subscribed", "sms:promotions": false}`: channel or channel:topic to a status."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise MessageInvalid("invalid_consent", "traits.consents must be an object")
    return [_consent_change(str(key), status) for key, status in value.items()]


def _consent_change(key: str, status: object) -> ConsentChangeIn:
    channel_name, _, topic = key.partition(":")
    try:
        channel = Channel(channel_name)
    except ValueError as exc:
        allowed = ", ".join(c.value for c in Channel)
        raise MessageInvalid(
            "invalid_consent", f"traits.consents: channel {channel_name!r} is not one of {allowed}"
        ) from exc
    if len(topic) > MAX_TOPIC_LENGTH:
        raise MessageInvalid("invalid_consent", "traits.consents: topic is over 100 characters")
    if status is True:
        status = ConsentStatus.SUBSCRIBED
    elif status is False:
        status = ConsentStatus.UNSUBSCRIBED
    if status not in {s.value for s in ConsentStatus}:
        raise MessageInvalid(
            "invalid_consent",
            f"traits.consents.{key} must be subscribed, unsubscribed, unknown, true or false",
        )
    return ConsentChangeIn(channel=channel, topic=topic, status=ConsentStatus(str(status)))


def to_cents(value: object, what: str) -> int:
    """Money as integer cents, exactly (no float rounding); a non-number says what to fix."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MessageInvalid("invalid_amount", f"{what} must be a number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise MessageInvalid("invalid_amount", f"{what} must be a number") from exc
    if not amount.is_finite() or abs(amount) * 100 >= MAX_CENTS:
        raise MessageInvalid("invalid_amount", f"{what} is out of range")
    return int((amount * 100).to_integral_value())


def order_amount_cents(properties: Mapping[str, Any]) -> int:
    """An order's amount from Segment's e-commerce spec: `revenue`, else `total`, else 0."""
    for key in ("revenue", "total"):
        if properties.get(key) is not None:
            return to_cents(properties[key], f"properties.{key}")
    return 0


@dataclass(slots=True)
class ProfileState(ProfileFields):
    """What identify calls write on a profile: the built-in fields, the traits, and when."""

    traits: dict[str, Any] = field(default_factory=dict)
    traits_updated_at: datetime | None = None


PROFILE_STATE_FIELDS = tuple(ProfileState.__dataclass_fields__)


def changed_fields(before: ProfileState, after: ProfileState) -> dict[str, Any]:
    """The fields `after` holds a different value in, with that value."""
    return {
        name: value
        for name in PROFILE_STATE_FIELDS
        if (value := getattr(after, name)) != getattr(before, name)
    }


def apply_identify(
    profile: ProfileState, traits: Mapping[str, Any], fields: ProfileFields, *, at: datetime
) -> None:
    """Newest wins: data newer than the profile's overwrites it; older data only fills gaps."""
    newer = profile.traits_updated_at is None or at >= profile.traits_updated_at
    profile.traits = merge_traits(profile.traits, traits, incoming_is_newer=newer)
    for name, value in fields.given().items():
        if newer or getattr(profile, name) is None:
            setattr(profile, name, value)
    if newer:
        profile.traits_updated_at = at


def merge_traits(
    current: Mapping[str, Any], incoming: Mapping[str, Any], *, incoming_is_newer: bool
) -> dict[str, Any]:
    """Top-level keys of the newer side win; the older side only fills keys that are missing."""
    if incoming_is_newer:
        return {**current, **incoming}
    return {**incoming, **current}


# --- facts ---


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass(slots=True)
class Facts:
    """A customer's aggregates; `observe` one event, `absorb` another customer's (merges)."""

    events_count: int = 0
    orders_count: int = 0
    revenue_total_cents: int = 0
    refunds_count: int = 0
    refunded_total_cents: int = 0
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None

    def observe(
        self, kind: EventType, name: str | None, properties: Mapping[str, Any], at: datetime
    ) -> None:
        self.events_count += 1
        self.first_seen_at = _earliest(self.first_seen_at, at)
        self.last_seen_at = _latest(self.last_seen_at, at)
        if kind != EventType.TRACK:
            return
        if name == ORDER_COMPLETED:
            self.orders_count += 1
            self.revenue_total_cents += order_amount_cents(properties)
            self.first_order_at = _earliest(self.first_order_at, at)
            self.last_order_at = _latest(self.last_order_at, at)
        elif name == ORDER_REFUNDED:
            self.refunds_count += 1
            self.refunded_total_cents += order_amount_cents(properties)

    def absorb(self, other: Facts) -> None:
        self.events_count += other.events_count
        self.orders_count += other.orders_count
        self.revenue_total_cents += other.revenue_total_cents
        self.refunds_count += other.refunds_count
        self.refunded_total_cents += other.refunded_total_cents
        self.first_order_at = _earliest(self.first_order_at, other.first_order_at)
        self.last_order_at = _latest(self.last_order_at, other.last_order_at)
        self.first_seen_at = _earliest(self.first_seen_at, other.first_seen_at)
        self.last_seen_at = _latest(self.last_seen_at, other.last_seen_at)

    @property
    def average_order_value_cents(self) -> int | None:
        if self.orders_count == 0:
            return None
        return round(self.revenue_total_cents / self.orders_count)


FACT_FIELDS = tuple(Facts.__dataclass_fields__)


def display_name(first_name: str | None, last_name: str | None) -> str:
    """ "First Last", either one alone, or "" when the profile has no name."""
    return " ".join(part for part in (first_name, last_name) if part)
