"""Public pages and endpoints of messages: what customers' mail clients, browsers and the
providers call. No API key here: each link carries a signed token, each provider callback
a signature, each browser a write key.

- `GET /m/o/{token}.gif` open pixel; `GET /m/c/{token}` click redirect
- `POST /m/u/{token}` RFC 8058 one-click unsubscribe (no page, no login); `GET` shows a
  confirmation button, because mail scanners follow links with GET
- `GET|POST /m/p/{token}` the preference centre (the link expires)
- `POST /webhooks/twilio/{provider}/status|inbound` Twilio callbacks, X-Twilio-Signature
- `POST /push/subscriptions` and the web push snippet and service worker
"""

from __future__ import annotations

import base64
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import ValidationError

from regulars.config import get_settings
from regulars.db import session_scope
from regulars.errors import NotFound, RegularsError, Unauthorized, ValidationFailed
from regulars.identity.api import authenticate, write_key_of
from regulars.kit import clock
from regulars.kit.responses import JSONBody
from regulars.messages import service
from regulars.messages.channels.twilio import delivery_status_of, is_bounce, verify_twilio_signature
from regulars.messages.inbound import twiml_message
from regulars.messages.models import DeliveryStatus, MessageChannel
from regulars.messages.schemas import PushSubscriptionCreate

router = APIRouter(include_in_schema=False)
pages = Environment(
    loader=PackageLoader("regulars", "templates"), autoescape=select_autoescape(["html"])
)
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, private"}
MAX_FORM_BYTES = 64 * 1024


def _page(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    business = service.replies.business_name()
    html = pages.get_template(f"messages/{name}").render(business=business, **values)
    return HTMLResponse(html, status_code=status, headers=NO_STORE)


def _error_page(error: RegularsError) -> HTMLResponse:
    title = "This link has expired" if error.status == 410 else "This link does not work"
    return _page("error.html", error.status, title=title, message=error.message)


# --- tracking ---


@router.get("/m/o/{token}.gif")
def open_pixel(token: str) -> Response:
    """Records the open; answers the 1x1 GIF whatever happens, so no mail client shows a
    broken image."""
    try:
        values = service.links.read(service.links.OPEN, token, now=clock.now())
        with session_scope() as session:
            service.feedback.opened(session, service.links.read_str(values, "d"))
    except RegularsError:
        pass  # a bad or old pixel: nothing to record, still an image
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.get("/m/c/{token}")
def click(token: str) -> Response:
    try:
        values = service.links.read(service.links.CLICK, token, now=clock.now())
        url = service.links.read_str(values, "u")
    except RegularsError as error:
        return _error_page(error)
    with session_scope() as session:
        service.feedback.clicked(session, service.links.read_str(values, "d"), url)
    return RedirectResponse(url, status_code=302, headers=NO_STORE)


# --- unsubscribe and preferences ---


@router.get("/m/u/{token}")
def unsubscribe_page(token: str) -> HTMLResponse:
    try:
        service.links.read(service.links.UNSUBSCRIBE, token, now=clock.now())
    except RegularsError as error:
        return _error_page(error)
    return _page("unsubscribe.html", done=False, preferences_url=None)


@router.post("/m/u/{token}")
def unsubscribe(token: str) -> HTMLResponse:
    """RFC 8058: the mail client POSTs `List-Unsubscribe=One-Click`; we unsubscribe at once.
    The body is not required: a POST to a valid token is the request."""
    try:
        values = service.links.read(service.links.UNSUBSCRIBE, token, now=clock.now())
        delivery_id = service.links.read_str(values, "d")
    except RegularsError as error:
        return _error_page(error)
    with session_scope() as session:
        delivery = service.feedback.unsubscribe(session, delivery_id, source="one_click")
        if delivery is None:
            return _error_page(NotFound("this message no longer exists"))
        preferences = service.links.preferences_url(delivery.customer_id, now=clock.now())
    return _page("unsubscribe.html", done=True, preferences_url=preferences)


def _preferences_customer(token: str) -> str:
    values = service.links.read(service.links.PREFERENCES, token, now=clock.now())
    return service.links.read_str(values, "c")


@router.get("/m/p/{token}")
def preference_centre(token: str) -> HTMLResponse:
    try:
        customer_id = _preferences_customer(token)
        with session_scope(readonly=True) as session:
            prefs = service.preferences.view(session, customer_id)
    except RegularsError as error:
        return _error_page(error)
    return _page("preferences.html", prefs=prefs, saved=False)


@router.post("/m/p/{token}")
async def save_preferences(token: str, request: Request) -> HTMLResponse:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return _error_page(ValidationFailed("the form is too large"))
    form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    try:
        customer_id = _preferences_customer(token)
        pause = next((v for k, v in form if k == "pause_days" and v != ""), None)
        if pause is not None and not pause.isdigit():
            raise ValidationFailed("pause_days must be a whole number of days")
        with session_scope() as session:
            prefs = service.preferences.save(
                session,
                customer_id,
                channels={v for k, v in form if k == "channel"},
                topics={v for k, v in form if k == "topic"},
                pause_days=int(pause) if pause is not None else None,
                unsubscribe_all=any(k == "unsubscribe_all" for k, _ in form),
            )
    except RegularsError as error:
        return _error_page(error)
    return _page("preferences.html", prefs=prefs, saved=True)


# --- Twilio callbacks ---


async def _verified_form(request: Request, provider: str, signature: str | None) -> dict[str, str]:
    """The callback's form fields, once X-Twilio-Signature proves Twilio sent them: an HMAC
    of our public URL and the fields with the provider's auth token."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ValidationFailed("the callback body is too large")
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    with session_scope(readonly=True) as session:
        found = service.providers.get(session, provider)
        token = str(found.config.get("auth_token", "")) if found is not None else ""
    if found is None or not found.kind.startswith("twilio"):
        raise NotFound(f"no Twilio provider {provider!r}")
    url = get_settings().public_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    if not signature or not verify_twilio_signature(url, form, signature, token):
        raise Unauthorized("X-Twilio-Signature does not match this request")
    return form


@router.post("/webhooks/twilio/{provider}/status")
async def twilio_status(
    provider: str, request: Request, x_twilio_signature: str | None = Header(None)
) -> Response:
    form = await _verified_form(request, provider, x_twilio_signature)
    sid, status = form.get("MessageSid", ""), form.get("MessageStatus", "")
    error_code = form.get("ErrorCode") or None
    new_status = delivery_status_of(status, error_code=error_code)
    if sid and new_status is not None:
        reason = f"twilio error {error_code}" if error_code else None
        with session_scope() as session:
            service.feedback.provider_status(
                session,
                sid,
                DeliveryStatus(new_status),
                reason=reason,
                bounce=is_bounce(error_code),
            )
    return Response(status_code=204)


@router.post("/webhooks/twilio/{provider}/inbound")
async def twilio_inbound(
    provider: str, request: Request, x_twilio_signature: str | None = Header(None)
) -> Response:
    """An SMS or WhatsApp message to our number. STOP / START / HELP are answered in TwiML."""
    form = await _verified_form(request, provider, x_twilio_signature)
    sender = form.get("From", "")
    channel = MessageChannel.WHATSAPP if sender.startswith("whatsapp:") else MessageChannel.SMS
    phone = sender.removeprefix("whatsapp:")
    if not phone.startswith("+"):
        raise ValidationFailed("From must be an E.164 number")
    with session_scope() as session:
        reply = service.replies.receive(
            session,
            channel=channel,
            phone=phone,
            body=form.get("Body", ""),
            message_sid=form.get("MessageSid", "") or form.get("SmsSid", ""),
        )
    return Response(twiml_message(reply.answer), media_type="application/xml")


# --- web push ---


CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "86400",
}


@router.options("/push/subscriptions")
def push_preflight() -> Response:
    return Response(status_code=204, headers=CORS)


@router.post("/push/subscriptions")
async def push_subscribe(request: Request) -> Response:
    """A browser's PushSubscription from regulars-push.js; the write key is the Basic user.
    Errors carry the CORS headers too, so the script on the store's site can read them."""
    try:
        customer_id = _subscribe(await request.body(), request.headers.get("authorization"))
    except RegularsError as error:
        return JSONBody(error.to_body(), status_code=error.status, headers=CORS)
    return JSONBody({"customer_id": customer_id}, status_code=201, headers=CORS)


def _subscribe(body: bytes, authorization: str | None) -> str:
    if len(body) > MAX_FORM_BYTES:
        raise ValidationFailed("the subscription is too large")
    try:
        raw = orjson.loads(body)
        data = PushSubscriptionCreate.model_validate(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed(f"body is not valid JSON: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ValidationFailed(f"{where}: {first['msg']}" if where else first["msg"]) from exc
    write_key = write_key_of(authorization, raw)
    with session_scope() as session:
        source_id = authenticate(session, write_key)
        return service.subscriptions.subscribe(session, data, source=source_id)


@router.get("/push/{name}.js")
def push_script(name: str) -> Response:
    if name not in ("regulars-push", "regulars-sw"):
        raise NotFound(f"no script {name}.js")
    script = resources.files("regulars").joinpath(f"static/messages/{name}.js").read_text()
    return Response(
        script,
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=3600", "Access-Control-Allow-Origin": "*"},
    )
