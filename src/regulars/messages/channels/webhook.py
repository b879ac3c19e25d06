"""Webhooks: a signed JSON POST of the rendered `payload` to the rendered `url`.

Each request carries

    Content-Type: application/json
    X-Regulars-Delivery: <delivery id>      the same on every retry: deduplicate on it
    X-Regulars-Timestamp: <unix seconds>
    X-Regulars-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

To verify, a receiver takes the raw request body (before any JSON parsing), recomputes the
HMAC with the shared secret over the timestamp header, a ".", and the body, compares it with
the signature in constant time, and refuses timestamps more than five minutes from its own
clock so a captured request cannot be replayed later. `verify_signature` does exactly that
(the scheme lives in `regulars.kit.webhooks`, shared with journeys' webhook nodes).

2xx is accepted; 408, 429, 5xx, timeouts and connection errors are transient; redirects
(not followed) and other 4xx are permanent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import httpx
import orjson
from pydantic import Field, SecretStr, field_validator

from regulars.kit import clock
from regulars.kit.webhooks import is_transient, sign
from regulars.messages.channels.base import (
    Accepted,
    Outcome,
    Outgoing,
    PermanentError,
    TransientError,
    TransportConfig,
)
from regulars.messages.models import MessageChannel


class WebhookConfig(TransportConfig):
    secret: SecretStr
    timeout: float = Field(default=10, gt=0)  # seconds

    @field_validator("secret")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("the signing secret cannot be empty")
        return value


class WebhookTransport:
    """One HTTP client, with its keep-alive connections, for the transport's life."""

    kind: ClassVar[str] = "webhook"
    channels: ClassVar[frozenset[MessageChannel]] = frozenset({MessageChannel.WEBHOOK})
    Config: ClassVar[type[TransportConfig]] = WebhookConfig

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = WebhookConfig.model_validate(config)
        self._secret = self.config.secret.get_secret_value()
        self._client = httpx.Client(timeout=self.config.timeout, follow_redirects=False)

    def send_many(self, messages: Sequence[Outgoing]) -> list[Outcome]:
        return [self._send(message) for message in messages]

    def close(self) -> None:
        self._client.close()

    def _send(self, message: Outgoing) -> Outcome:
        try:
            url = str(message.content["url"])
            body = orjson.dumps(message.content["payload"])
        except (KeyError, TypeError) as exc:  # no url or payload; a payload that is not JSON
            return PermanentError(f"cannot build the webhook request: {exc!r}")
        timestamp = str(int(clock.now().timestamp()))
        headers = {
            "Content-Type": "application/json",
            "X-Regulars-Delivery": message.delivery_id,
            "X-Regulars-Timestamp": timestamp,
            "X-Regulars-Signature": sign(self._secret, timestamp, body),
        }
        try:
            response = self._client.post(url, content=body, headers=headers)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return PermanentError(f"invalid webhook URL {url!r}: {exc}")
        except httpx.TimeoutException as exc:
            return TransientError(f"webhook timed out after {self.config.timeout}s: {exc!r}")
        except httpx.TransportError as exc:  # refused, reset, DNS, TLS, protocol errors
            return TransientError(f"webhook request failed: {exc!r}")
        return _outcome(response)


def _outcome(response: httpx.Response) -> Outcome:
    if response.is_success:
        return Accepted(provider_message_id=None)
    detail = f"webhook answered HTTP {response.status_code}: {response.text[:200]}"
    status = response.status_code
    if is_transient(status):
        return TransientError(detail)
    return PermanentError(detail)
