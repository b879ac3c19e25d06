"""A loopback stand-in for Twilio's Messages API, faithful to its shape, for tests and benchmarks.

    with FakeTwilio() as fake:
        transport = TwilioSmsTransport(fake.config(status_callback_url=webhook_url))
        transport.send_many([...])
        fake.requests[-1].form["Body"]
        fake.status_callback(sid, "delivered")       # POSTs a signed callback to the webhook

It checks HTTP Basic auth (401, error 20003), reads the form fields, answers 201 with a message
resource shaped like Twilio's (`SM` + 32 hex sid, `queued`, RFC 2822 dates, ...), refuses
numbers it was told to (400 with their error code), fails the next requests on demand (429,
500, 503) and records every request. Callbacks and inbound messages are signed with the
official `twilio` package's RequestValidator, so they test our signature check against
Twilio's own code.
"""

from __future__ import annotations

import base64
import json
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from types import TracebackType
from typing import Any, Self

import httpx
import phonenumbers
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from twilio.request_validator import RequestValidator

API = "/2010-04-01"
FROM_NUMBER = "+15005550006"
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = set("^{}\\[~]|€\f")
ERROR_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource {path} was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "The 'To' number {to} is not a valid phone number.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the"
    " 'To' number: {to}.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21606: "The 'From' phone number provided is not a valid message-capable Twilio phone"
    " number for this destination/account.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number {to} is not a valid mobile number",
    21656: "The ContentVariables Parameter is invalid.",
}
_FAILURE_CODES = {429: 20429, 500: 20500, 503: 20503}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake answered; `client_port` tells TCP connections apart."""

    method: str
    path: str
    form: dict[str, str]
    authorized: bool
    client_port: int
    status_code: int


def error_body(code: int, status: int, **fields: str) -> dict[str, Any]:
    """Twilio's error JSON: {"code", "message", "more_info", "status"}."""
    message = ERROR_MESSAGES.get(code, f"Error {code}").format(**fields)
    more_info = f"https://www.twilio.com/docs/errors/{code}"
    return {"code": code, "message": message, "more_info": more_info, "status": status}


def segments(body: str) -> int:
    """How many SMS parts Twilio bills: GSM-7 160/153 characters, else UCS-2 70/67."""
    if all(char in _GSM7 or char in _GSM7_EXTENSION for char in body):
        units = sum(2 if char in _GSM7_EXTENSION else 1 for char in body)
        single, multi = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    return 1 if units <= single else math.ceil(units / multi)


def signature_headers(url: str, params: dict[str, str], auth_token: str) -> dict[str, str]:
    """The headers Twilio sends with a webhook, signed by the official validator."""
    signature = RequestValidator(auth_token).compute_signature(url, params)
    return {"X-Twilio-Signature": str(signature), "User-Agent": "TwilioProxy/1.1"}


def inbound_message(
    url: str,
    *,
    auth_token: str,
    account_sid: str,
    from_: str,
    to: str,
    body: str,
    message_sid: str | None = None,
    num_media: int = 0,
) -> tuple[dict[str, str], dict[str, str]]:
    """The form and headers of an incoming message Twilio POSTs to the webhook `url`.

    `from_`/`to` are as Twilio writes them: `+15551234567`, or `whatsapp:+15551234567`.
    Post them as form data to exactly `url` (the signature covers it).
    """
    sid = message_sid or "SM" + secrets.token_hex(16)
    form = {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "AccountSid": account_sid,
        "From": from_,
        "To": to,
        "Body": body,
        "NumMedia": str(num_media),
        "NumSegments": str(segments(body)),
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }
    return form, signature_headers(url, form, auth_token)


class FakeTwilio:
    """The fake server. Use as a context manager, or call start() and stop()."""

    def __init__(self, *, account_sid: str | None = None, auth_token: str | None = None) -> None:
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self.url = ""
        self.messages: dict[str, dict[str, Any]] = {}
        self._callbacks: dict[str, str] = {}
        self._requests: list[RecordedRequest] = []
        self._refusals: dict[str, int] = {}
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        routes = [
            Route(f"{API}/Accounts/{{account}}/Messages.json", self._create, methods=["POST"]),
            Route(f"{API}/Accounts/{{account}}/Messages/{{sid}}.json", self._fetch),
        ]
        config = uvicorn.Config(
            Starlette(routes=routes),
            host="127.0.0.1",
            port=0,
            lifespan="off",
            log_level="warning",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-twilio", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert self._thread.is_alive(), "the fake Twilio server stopped while starting"
            assert time.monotonic() < deadline, "the fake Twilio server did not start in 10 s"
            time.sleep(0.01)  # readiness poll of a real server, bounded by the deadline
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # What the test tells it ----------------------------------------------------------------

    def config(self, **overrides: Any) -> dict[str, Any]:
        """A transport config for this fake (`from_number` +15005550006)."""
        base = {
            "account_sid": self.account_sid,
            "auth_token": self.auth_token,
            "base_url": self.url,
            "from_number": FROM_NUMBER,
        }
        return {**base, **overrides}

    def refuse(self, number: str, code: int = 21211) -> None:
        """Answer 400 with `code` for messages to `number` (21211 invalid, 21610 STOP, ...)."""
        with self._lock:
            self._refusals[number] = code

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next `count` requests with `status` (429, 500 or 503)."""
        assert status in _FAILURE_CODES, status
        with self._lock:
            self._failures.extend([status] * count)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    # Webhooks it sends ---------------------------------------------------------------------

    def status_callback(
        self,
        message_sid: str,
        status: str,
        url: str | None = None,
        *,
        error_code: int | None = None,
        client: httpx.Client | None = None,
    ) -> httpx.Response:
        """POST a signed status callback, to `url` or to the message's StatusCallback.

        `client` may be a Starlette TestClient (an httpx.Client) for an app not served on a
        port; `url` is then its full URL, e.g. "http://testserver/webhooks/twilio/status".
        """
        with self._lock:
            message = self.messages[message_sid]
            message["status"] = status
            target = url or self._callbacks[message_sid]
        form = {
            "MessageSid": message_sid,
            "SmsSid": message_sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "AccountSid": self.account_sid,
            "To": message["to"],
            "From": message["from"] or "",
            "ApiVersion": "2010-04-01",
        }
        if error_code is not None:
            form["ErrorCode"] = str(error_code)
        headers = signature_headers(target, form, self.auth_token)
        if client is not None:
            return client.post(target, data=form, headers=headers)
        return httpx.post(target, data=form, headers=headers, timeout=10)

    def inbound(
        self, url: str, *, from_: str, body: str, to: str = FROM_NUMBER
    ) -> tuple[dict[str, str], dict[str, str]]:
        """A signed incoming message from `from_` to this account's number (see
        `inbound_message`)."""
        return inbound_message(
            url,
            auth_token=self.auth_token,
            account_sid=self.account_sid,
            from_=from_,
            to=to,
            body=body,
        )

    # The API -------------------------------------------------------------------------------

    async def _create(self, request: Request) -> JSONResponse:
        items = (await request.form()).multi_items()
        fields = {key: value for key, value in items if isinstance(value, str)}
        with self._lock:
            status, body = self._answer(request, fields)
            self._record(request, fields, status)
        return JSONResponse(body, status_code=status)

    async def _fetch(self, request: Request) -> JSONResponse:
        with self._lock:
            status, body = self._authenticate(request)
            if status == 200:
                message = self.messages.get(request.path_params["sid"])
                status, body = (200, message) if message else (404, self._not_found(request))
            self._record(request, {}, status)
        return JSONResponse(body, status_code=status)

    def _answer(self, request: Request, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        status, body = self._authenticate(request)
        if status != 200:
            return status, body
        if self._failures:
            failure = self._failures.pop(0)
            return failure, error_body(_FAILURE_CODES[failure], failure)
        refusal = self._refusal(form)
        if refusal is not None:
            return 400, refusal
        message = self._message(form)
        self.messages[message["sid"]] = message
        if "StatusCallback" in form:
            self._callbacks[message["sid"]] = form["StatusCallback"]
        return 201, message

    def _authenticate(self, request: Request) -> tuple[int, dict[str, Any]]:
        credentials = f"{self.account_sid}:{self.auth_token}".encode()
        expected = "Basic " + base64.b64encode(credentials).decode()
        if request.headers.get("authorization") != expected:
            return 401, error_body(20003, 401)
        if request.path_params["account"] != self.account_sid:
            return 404, self._not_found(request)
        return 200, {}

    def _not_found(self, request: Request) -> dict[str, Any]:
        return error_body(20404, 404, path=request.url.path)

    def _refusal(self, form: dict[str, str]) -> dict[str, Any] | None:
        to = form.get("To", "")
        number = to.removeprefix("whatsapp:")
        if not to:
            return error_body(21604, 400)
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return error_body(21603, 400)
        if not (form.get("Body") or form.get("MediaUrl") or form.get("ContentSid")):
            return error_body(21602, 400)
        if "ContentVariables" in form and not _is_json_object(form["ContentVariables"]):
            return error_body(21656, 400)
        code = self._refusals.get(number)
        if code is None and not _is_possible_number(number):
            code = 21211
        return None if code is None else error_body(code, 400, to=number)

    def _message(self, form: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC))
        uri = f"{API}/Accounts/{self.account_sid}/Messages/{sid}"
        body = form.get("Body", "")
        whatsapp = form["To"].startswith("whatsapp:")
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1" if whatsapp else str(segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if "From" not in form else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": form["To"],
            "uri": f"{uri}.json",
        }

    def _record(self, request: Request, form: dict[str, str], status: int) -> None:
        authorized = status != 401
        port = request.client.port if request.client else 0
        recorded = RecordedRequest(request.method, request.url.path, form, authorized, port, status)
        self._requests.append(recorded)


def _is_possible_number(number: str) -> bool:
    """Twilio refuses a 'To' that cannot be a phone number (+1555): E.164 of a possible
    length for its country."""
    if not _E164.fullmatch(number):
        return False
    try:
        return bool(phonenumbers.is_possible_number(phonenumbers.parse(number)))
    except phonenumbers.NumberParseException:
        return False


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False
