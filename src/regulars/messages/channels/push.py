"""Web Push (RFC 8030) to browsers: the payload is encrypted for the subscription's keys
(RFC 8291, aes128gcm) and the request signed with this server's VAPID key (RFC 8292).

The endpoint is the push service's URL the browser gave (FCM, Mozilla autopush, Apple, ...);
`Outgoing.address` holds it and `Outgoing.push` the subscription's keys. A 404 or 410 means
the subscription expired: the outcome says `gone` and the dispatcher removes it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import requests
from py_vapid import Vapid, VapidException
from pydantic import Field, field_validator
from pywebpush import WebPusher
from requests.exceptions import InvalidSchema, InvalidURL, MissingSchema

from regulars.errors import ValidationFailed
from regulars.kit import clock
from regulars.messages import vapid
from regulars.messages.channels.base import (
    Accepted,
    Outcome,
    Outgoing,
    PermanentError,
    PushTarget,
    TransientError,
    TransportConfig,
)
from regulars.messages.models import MessageChannel

# Push services take 4096 bytes of body; one aes128gcm record of it holds this much plaintext
# (4096 minus the 86-byte header, the 16-byte tag and the 1-byte delimiter).
MAX_PAYLOAD_BYTES = 3993
TOKEN_LIFETIME = timedelta(hours=12)  # RFC 8292 allows at most 24 hours
_SUBJECT = re.compile(r"mailto:[^@\s]+@[^@\s]+|https://[^\s/]+(/\S*)?", re.IGNORECASE)


class WebPushConfig(TransportConfig):
    vapid_private_key: str = Field(min_length=1)  # base64url raw scalar, see messages/vapid.py
    vapid_subject: str  # "mailto:ops@shop.example" or "https://shop.example"
    ttl: int = Field(default=86_400, ge=0, le=2_419_200)  # seconds the service keeps it
    urgency: Literal["very-low", "low", "normal", "high"] = "normal"
    timeout: float = Field(default=10.0, gt=0, le=300)

    @field_validator("vapid_private_key")
    @classmethod
    def _private_key_loads(cls, value: str) -> str:
        try:
            vapid.load_private_key(value)
        except ValidationFailed as exc:
            raise ValueError(exc.message) from exc
        return value.strip()

    @field_validator("vapid_subject")
    @classmethod
    def _subject_is_contact(cls, value: str) -> str:
        if not _SUBJECT.fullmatch(value):
            raise ValueError("vapid_subject must be a mailto: address or an https:// URL")
        return value


class WebPushTransport:
    kind: ClassVar[str] = "webpush"
    channels: ClassVar[frozenset[MessageChannel]] = frozenset({MessageChannel.PUSH})
    Config: ClassVar[type[TransportConfig]] = WebPushConfig

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = WebPushConfig.model_validate(dict(config))
        # no-strict: the subject is checked above; py_vapid's own check refuses https paths.
        self._vapid = Vapid(
            vapid.load_private_key(self.config.vapid_private_key), conf={"no-strict": True}
        )
        self._session = requests.Session()  # keep-alive across the batch

    def send_many(self, messages: Sequence[Outgoing]) -> list[Outcome]:
        return [self._send(message) for message in messages]

    def close(self) -> None:
        self._session.close()

    def _send(self, message: Outgoing) -> Outcome:
        target = message.push
        if target is None:
            return PermanentError("push message without a subscription's keys")
        refused = _refusal(message.address, target)
        if refused is not None:
            return refused
        data = _payload(message)
        if len(data) > MAX_PAYLOAD_BYTES:
            return PermanentError(f"push payload is {len(data)} bytes, over {MAX_PAYLOAD_BYTES}")
        subscription = {
            "endpoint": message.address,
            "keys": {"p256dh": target.p256dh, "auth": target.auth},
        }
        try:
            headers = {**self._authorization(message.address), "Urgency": self.config.urgency}
        except VapidException as exc:  # an endpoint origin py_vapid cannot sign for (IPv6)
            return PermanentError(f"cannot sign for {message.address!r}: {exc}")
        try:
            response = WebPusher(subscription, requests_session=self._session).send(
                data, headers, ttl=self.config.ttl, timeout=self.config.timeout
            )
        except requests.Timeout:
            return TransientError(f"push service timed out after {self.config.timeout}s")
        except (InvalidURL, InvalidSchema, MissingSchema) as exc:
            return PermanentError(f"not a push endpoint: {exc}", gone=True)
        except requests.RequestException as exc:  # refused, reset, TLS, a broken response
            return TransientError(f"push service unreachable: {exc}")
        return _outcome(response)

    def _authorization(self, endpoint: str) -> dict[str, str]:
        """The VAPID header: `vapid t=<ES256 JWT>, k=<public key>`."""
        expires = clock.now() + TOKEN_LIFETIME
        claims = {
            "sub": self.config.vapid_subject,
            "aud": _origin(endpoint),
            "exp": int(expires.timestamp()),
        }
        headers: dict[str, str] = self._vapid.sign(claims)
        return headers


def _refusal(endpoint: str, target: PushTarget) -> PermanentError | None:
    """Why this subscription can never be sent to, if it cannot: it is removed (`gone`)."""
    if not _is_url(endpoint):
        return PermanentError(f"not a push endpoint: {endpoint!r}", gone=True)
    try:
        vapid.validate_subscription_keys(target.p256dh, target.auth)
    except ValidationFailed as exc:
        return PermanentError(exc.message, gone=True)
    return None


def _is_url(endpoint: str) -> bool:
    try:
        parts = urlsplit(endpoint)
    except ValueError:  # a malformed IPv6 host
        return False
    return parts.scheme in ("https", "http") and bool(parts.hostname)


def _origin(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _payload(message: Outgoing) -> bytes:
    content = message.content
    body = {
        "title": content.get("title", ""),
        "body": content.get("body", ""),
        "icon": content.get("icon", ""),
        "url": content.get("url", ""),
        "actions": list(content.get("actions", [])),
        "delivery_id": message.delivery_id,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _outcome(response: requests.Response) -> Outcome:
    status = response.status_code
    if 200 <= status < 300:
        return Accepted(provider_message_id=response.headers.get("Location"))
    reason = response.text.strip()[:300]
    detail = f"push service answered {status}" + (f": {reason}" if reason else "")
    if status in (404, 410):
        return PermanentError(detail, gone=True)
    if status in (408, 429) or status >= 500:
        return TransientError(detail)
    return PermanentError(detail)
