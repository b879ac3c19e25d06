"""What every transport speaks: an outgoing message in, an outcome per message out.

A transport is one provider kind (`smtp`, `twilio_sms`, `webpush`, ...). It knows nothing of
the database: the dispatcher (messages/dispatch.py) claims deliveries, builds `Outgoing`
messages, hands a batch to the transport and records what came back. Errors are values, one
per message, so one bad address never fails its batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from regulars.messages.models import Category, DeliveryStatus, MessageChannel


@dataclass(frozen=True, slots=True)
class PushTarget:
    """A browser subscription: where to POST and the keys to encrypt for (RFC 8291)."""

    endpoint: str
    p256dh: str
    auth: str


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One rendered message ready for a provider.

    `address` is the email address, the E.164 phone number, the push endpoint, or the
    customer id (in-app, webhook). `content` has the channel's rendered fields
    (messages/content.py). `headers` are extra email headers (List-Unsubscribe, ...).
    """

    delivery_id: str
    channel: MessageChannel
    category: Category
    customer_id: str
    address: str
    content: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    push: PushTarget | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """The provider took the message. In-app and sandbox deliver at once (status DELIVERED)."""

    provider_message_id: str | None = None
    status: DeliveryStatus = DeliveryStatus.SENT


class DeliveryError(Exception):
    """Base of a provider's refusal; `detail` is what goes on the delivery as its reason."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class TransientError(DeliveryError):
    """Timeouts, connection errors, 5xx, 429: the next provider may take it, or a retry."""


class PermanentError(DeliveryError):
    """4xx and the like: the same message would fail again anywhere; no retry, no fail-over.

    `bounce` says the address itself is bad (hard bounce, unknown number): it is suppressed.
    `gone` says a push subscription expired (404/410): it is removed.
    """

    def __init__(self, detail: str, *, bounce: bool = False, gone: bool = False) -> None:
        super().__init__(detail)
        self.bounce = bounce
        self.gone = gone


Outcome = Accepted | TransientError | PermanentError


class TransportConfig(BaseModel):
    """Base of each transport's settings (stored as JSON on the provider row)."""

    model_config = ConfigDict(extra="forbid")


class Transport(Protocol):
    """A provider kind. `send_many` keeps one connection for the whole batch where the
    protocol allows (SMTP, HTTP keep-alive) and answers one outcome per message, in order."""

    kind: ClassVar[str]
    channels: ClassVar[frozenset[MessageChannel]]
    Config: ClassVar[type[TransportConfig]]

    def __init__(self, config: Mapping[str, Any]) -> None: ...

    def send_many(self, messages: Sequence[Outgoing]) -> list[Outcome]: ...

    def close(self) -> None: ...
