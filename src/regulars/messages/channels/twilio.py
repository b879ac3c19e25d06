"""Twilio Programmable Messaging, shared by the SMS and WhatsApp transports: the REST call
that sends one message, what its answer means, and the pure parts of Twilio's webhooks (the
X-Twilio-Signature check and the message statuses).

Runtime code speaks HTTP with httpx; the official `twilio` package is only used by the tests,
to check this module's signature against Twilio's own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import Field, model_validator

from regulars.messages.channels.base import (
    Accepted,
    Outcome,
    Outgoing,
    PermanentError,
    TransientError,
    TransportConfig,
)
from regulars.messages.models import DeliveryStatus, MessageChannel

API_VERSION = "2010-04-01"
SIGNATURE_HEADER = "X-Twilio-Signature"
CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
WHATSAPP_PREFIX = "whatsapp:"

# Error codes that mean the address itself is bad: the delivery bounces and the address is
# suppressed. They come synchronously (400 on create) or, through a Messaging Service or
# after the carrier answered, as the ErrorCode of a failed/undelivered status callback.
BOUNCE_CODES = frozenset(
    {
        21211,  # invalid 'To' phone number
        21610,  # the recipient replied STOP to this sender
        21614,  # 'To' is not a mobile number
        30005,  # unknown destination handset: the number does not exist
        30006,  # landline or unreachable carrier
        63003,  # WhatsApp: the 'To' number is not a WhatsApp user
    }
)
# 30003 (unreachable handset) is deliberately absent: Twilio documents it as a phone that is
# off or out of coverage, usually temporary; suppressing on it would lose reachable people.

# Errors about our account or sender, not about the message: another provider may work.
ACCOUNT_CODES = frozenset(
    {
        20003,  # authentication failed
        20005,  # account not active
        20404,  # the account (or the API path) does not exist
        21212,  # invalid 'From' number
        21408,  # sending to this region is not enabled on the account
        21606,  # 'From' is not a message-capable number of this account
        21611,  # the 'From' number's queue is full
        21659,  # 'From' is not a Twilio number (or a short code of another country)
        21660,  # 'From' belongs to another account
        63007,  # WhatsApp: no channel for the 'From' address
    }
)


class TwilioConfig(TransportConfig):
    """A Twilio account and the sender it sends from.

    `from_number` is an E.164 number of the account; short codes and alphanumeric sender IDs
    are used through a Messaging Service (`messaging_service_sid`), which also picks a sender
    from its pool. With both, Twilio sends from `from_number` within the service.
    `status_callback_url` is our public webhook URL that Twilio POSTs status changes to.
    """

    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: str = Field(min_length=1)
    base_url: str = Field(default="https://api.twilio.com", pattern=r"^https?://[^\s/]+/?$")
    from_number: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{1,14}$")
    messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$")
    status_callback_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    timeout: float = Field(default=10.0, gt=0, le=300)

    @model_validator(mode="after")
    def _has_a_sender(self) -> Self:
        if not (self.from_number or self.messaging_service_sid):
            raise ValueError("set from_number or messaging_service_sid")
        return self


@dataclass(frozen=True, slots=True)
class ContentTemplate:
    """An approved template of Twilio's Content API (`HX...`) and its numbered variables."""

    sid: str
    variables: Sequence[str] = ()


def new_client(config: TwilioConfig) -> httpx.Client:
    """One client per transport: its connection is kept alive across a batch."""
    return httpx.Client(
        base_url=config.base_url.rstrip("/"),
        auth=(config.account_sid, config.auth_token),
        timeout=config.timeout,
        headers={"Accept": "application/json"},
    )


def messages_path(account_sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"


def message_form(
    config: TwilioConfig, *, to: str, content: str | ContentTemplate, whatsapp: bool = False
) -> dict[str, str]:
    """The form fields of a Messages create request."""
    prefix = WHATSAPP_PREFIX if whatsapp else ""
    form = {"To": prefix + to.removeprefix(WHATSAPP_PREFIX)}
    if config.from_number:
        form["From"] = prefix + config.from_number
    if config.messaging_service_sid:
        form["MessagingServiceSid"] = config.messaging_service_sid
    if isinstance(content, ContentTemplate):
        form["ContentSid"] = content.sid
        if content.variables:
            numbered = {str(n): value for n, value in enumerate(content.variables, start=1)}
            form["ContentVariables"] = json.dumps(numbered, ensure_ascii=False)
    else:
        form["Body"] = content
    if config.status_callback_url:
        form["StatusCallback"] = config.status_callback_url
    return form


def send_message(
    client: httpx.Client,
    config: TwilioConfig,
    *,
    to: str,
    content: str | ContentTemplate,
    whatsapp: bool = False,
) -> Outcome:
    """Create one message; every failure comes back as a value."""
    form = message_form(config, to=to, content=content, whatsapp=whatsapp)
    try:
        response = client.post(messages_path(config.account_sid), data=form)
    except httpx.TimeoutException:
        return TransientError(f"twilio did not answer within {config.timeout:g} s")
    except httpx.TransportError as exc:  # refused, reset, DNS, TLS, a broken response
        return TransientError(f"twilio unreachable: {type(exc).__name__}: {exc}")
    return outcome_of(response)


def outcome_of(response: httpx.Response) -> Outcome:
    """What Twilio's answer to a create means for the delivery."""
    status = response.status_code
    if response.is_success:
        sid = _json(response).get("sid")
        return Accepted(provider_message_id=sid if isinstance(sid, str) else None)
    code, message = _error(response)
    detail = f"twilio {status}" + (f" error {code}" if code else "") + f": {message}"
    if code in BOUNCE_CODES:
        return PermanentError(detail, bounce=True)
    if status in (401, 403, 404) or code in ACCOUNT_CODES:
        return TransientError(
            f"{detail} (the provider's account_sid, auth_token or sender is wrong or not"
            " allowed; another provider may work)"
        )
    if 400 <= status < 500 and status not in (408, 429):
        return PermanentError(detail)
    return TransientError(detail)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error(response: httpx.Response) -> tuple[int | None, str]:
    """Twilio's error body: {"code": 21211, "message": "...", "more_info": ..., "status": 400}."""
    data = _json(response)
    code = data.get("code")
    message = data.get("message")
    if not isinstance(message, str) or not message:
        message = response.text.strip()[:200] or response.reason_phrase
    return (code if isinstance(code, int) else None), message[:300]


# Webhooks: the signature -------------------------------------------------------------------


def twilio_signature(url: str, params: Mapping[str, str], auth_token: str) -> str:
    """Base64 of HMAC-SHA1(auth token, URL + each form field's name and value, by name)."""
    data = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_twilio_signature(
    url: str, params: Mapping[str, str], signature: str, auth_token: str
) -> bool:
    """Whether `signature` (the X-Twilio-Signature header) signs this request.

    `url` is the full URL Twilio requested, query string included. Like Twilio's own
    validator this accepts the URL with and without its port, since Twilio signs either.
    """
    expected = signature.strip().encode()
    return any(
        hmac.compare_digest(twilio_signature(candidate, params, auth_token).encode(), expected)
        for candidate in _url_variants(url)
    )


def _url_variants(url: str) -> list[str]:
    """The URL as given, without its port, and with the scheme's default port added."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number, a malformed IPv6 host
        return [url]
    if port is not None:
        host = parts.netloc.rsplit(":", 1)[0]
        return [url, urlunsplit(parts._replace(netloc=host))]
    default = 443 if parts.scheme == "https" else 80
    return [url, urlunsplit(parts._replace(netloc=f"{parts.netloc}:{default}"))]


# Webhooks: the statuses --------------------------------------------------------------------

_STATUSES = {
    "accepted": DeliveryStatus.SENT,
    "scheduled": DeliveryStatus.SENT,
    "queued": DeliveryStatus.SENT,
    "sending": DeliveryStatus.SENT,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.OPENED,  # WhatsApp read receipts
    "undelivered": DeliveryStatus.FAILED,
    "failed": DeliveryStatus.FAILED,
}


def delivery_status_of(
    message_status: str, *, error_code: str | int | None = None
) -> DeliveryStatus | None:
    """The delivery status a MessageStatus callback means; None for one we do not track
    (inbound `received`, `canceled`, a status Twilio adds later).

    With the callback's ErrorCode, a failure on a bad address (`is_bounce`) is BOUNCED.
    """
    status = _STATUSES.get(message_status.strip().lower())
    if status is DeliveryStatus.FAILED and is_bounce(error_code):
        return DeliveryStatus.BOUNCED
    return status


def is_bounce(error_code: str | int | None) -> bool:
    """Whether a Twilio error code says the address is bad (see BOUNCE_CODES)."""
    if isinstance(error_code, str):
        error_code = int(error_code) if error_code.strip().isdigit() else None
    return error_code in BOUNCE_CODES


# The transports' shared body ---------------------------------------------------------------


class TwilioTransport:
    """Sends each message of a batch over one kept-alive connection; subclasses say which
    channel and turn a message's rendered content into a body or a Content template."""

    kind: ClassVar[str]
    channels: ClassVar[frozenset[MessageChannel]]
    Config: ClassVar[type[TransportConfig]] = TwilioConfig
    whatsapp: ClassVar[bool] = False

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = TwilioConfig.model_validate(dict(config))
        self._client = new_client(self.config)

    def send_many(self, messages: Sequence[Outgoing]) -> list[Outcome]:
        return [self._send(message) for message in messages]

    def close(self) -> None:
        self._client.close()

    def content_of(self, message: Outgoing) -> str | ContentTemplate | PermanentError:
        raise NotImplementedError

    def _send(self, message: Outgoing) -> Outcome:
        content = self.content_of(message)
        if isinstance(content, PermanentError):
            return content
        return send_message(
            self._client, self.config, to=message.address, content=content, whatsapp=self.whatsapp
        )
