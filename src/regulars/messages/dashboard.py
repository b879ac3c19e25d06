"""Dashboard pages of messages: templates (list, editor, live preview for a customer, save).

Broadcasts, deliveries and the sandbox outbox are in dashboard_log.py; the channel providers
and policies of Settings in dashboard_settings.py. Their routers are included in this one.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.customers import service as customers
from regulars.db import session_scope
from regulars.errors import NotFound, RegularsError, ValidationFailed
from regulars.identity.roles import Permission
from regulars.identity.staff import SignedIn
from regulars.messages import service
from regulars.messages.dashboard_log import router as log_router
from regulars.messages.dashboard_settings import router as settings_router
from regulars.messages.models import Category, MessageChannel
from regulars.messages.schemas import KEY_PATTERN, TemplateRead, TemplateWrite
from regulars.pages import form_fields, page, render

router = APIRouter(include_in_schema=False)
router.include_router(log_router)
router.include_router(settings_router)

# The editor's fields of each channel, as messages/content.py defines the sources:
# (name, label, kind) with kind "line", "text" (a textarea), "lines" (a list, one per line),
# "actions" (push actions, one per line as `action | title | url`) or "format".
FIELDS: dict[MessageChannel, list[tuple[str, str, str]]] = {
    MessageChannel.EMAIL: [
        ("subject", "Subject", "line"),
        ("preheader", "Preheader", "line"),
        ("format", "Body format", "format"),
        ("body", "Body (MJML or HTML)", "text"),
    ],
    MessageChannel.SMS: [("body", "Body", "text")],
    MessageChannel.WHATSAPP: [
        ("body", "Free text (within 24 hours of the customer's last message)", "text"),
        ("template_name", "Approved template name", "line"),
        ("template_language", "Template language", "line"),
        ("parameters", "Template parameters, one per line", "lines"),
    ],
    MessageChannel.PUSH: [
        ("title", "Title", "line"),
        ("body", "Body", "text"),
        ("icon", "Icon URL", "line"),
        ("url", "Link", "line"),
        ("actions", "Actions, one per line: action | title | url", "actions"),
    ],
    MessageChannel.INAPP: [
        ("title", "Title", "line"),
        ("body", "Body", "text"),
        ("link", "Link", "line"),
    ],
    MessageChannel.WEBHOOK: [("url", "URL", "line"), ("body", "JSON body (Liquid)", "text")],
}
_KEY = re.compile(KEY_PATTERN)


def source_of(channel: MessageChannel, form: dict[str, str]) -> dict[str, Any]:
    """One locale's source from the editor's fields (`f_<field>`); empty optional fields are
    left out so the channel's defaults apply."""
    source: dict[str, Any] = {}
    for name, _label, kind in FIELDS[channel]:
        value = form.get(f"f_{name}", "").replace("\r\n", "\n")
        if kind == "lines":
            source[name] = [line for line in value.split("\n") if line.strip()]
        elif kind == "actions":
            source[name] = [_action(line) for line in value.split("\n") if line.strip()]
        elif value.strip():
            source[name] = value
    return source


def _action(line: str) -> dict[str, str]:
    parts = [part.strip() for part in line.split("|")] + ["", "", ""]
    return {"action": parts[0], "title": parts[1], "url": parts[2]}


def field_values(channel: MessageChannel, source: dict[str, Any]) -> dict[str, str]:
    """The editor's text for each field of a stored source."""
    values: dict[str, str] = {}
    for name, _label, kind in FIELDS[channel]:
        value = source.get(name, "")
        if kind == "lines":
            value = "\n".join(str(item) for item in value or [])
        elif kind == "actions":
            value = "\n".join(
                f"{a.get('action', '')} | {a.get('title', '')} | {a.get('url', '')}"
                for a in value or []
            )
        values[name] = str(value)
    return values


def problems_of(error: Exception, locale: str) -> list[dict[str, Any]]:
    """Each problem with its locale, field, line and column, as the API's 422 lists them
    (any other error, e.g. an unknown category, as its one message)."""
    if isinstance(error, ValidationError):
        return [
            {"locale": None, "field": ".".join(map(str, e["loc"])), "message": e["msg"]}
            for e in error.errors(include_url=False)
        ]
    if isinstance(error, RegularsError) and isinstance(error.details, list):
        return [{"locale": locale, **problem} for problem in error.details]
    message = error.message if isinstance(error, RegularsError) else str(error)
    return [{"locale": None, "field": None, "message": message}]


# --- templates ---


@router.get("/messages/templates", response_class=HTMLResponse)
def templates_page(
    request: Request, staff: SignedIn = Depends(page(Permission.MESSAGES_READ))
) -> Response:
    with session_scope(readonly=True) as session:
        found = service.templates.list_all(session)
    by_key: dict[str, list[TemplateRead]] = {}
    for template in sorted(found, key=lambda t: (t.key, t.channel.value)):
        by_key.setdefault(template.key, []).append(template)
    return render(request, "messages/staff/templates.html", staff, title="Templates", by_key=by_key)


@router.get("/messages/templates/new", response_class=HTMLResponse)
def new_template(
    request: Request,
    key: str = "",
    channel: str = "",
    staff: SignedIn = Depends(page(Permission.MESSAGES_WRITE)),
) -> Response:
    """First the key and channel; with both, the editor of a template not saved yet."""
    problem = None
    if key or channel:
        if not _KEY.match(key):
            problem = "the key is lowercase letters, digits, `_`, `.` or `-`, e.g. order_shipped"
        elif channel not in set(MessageChannel):
            problem = "choose a channel"
        else:
            return _editor(request, staff, key, MessageChannel(channel), None, locale=None)
    return render(
        request,
        "messages/staff/template_new.html",
        staff,
        status=422 if problem else 200,
        title="New template",
        key=key,
        channel=channel,
        channels=list(MessageChannel),
        problem=problem,
    )


@router.get("/messages/templates/{key}/{channel}", response_class=HTMLResponse)
def template_editor(
    request: Request,
    key: str,
    channel: MessageChannel,
    locale: str | None = None,
    saved: int | None = None,
    staff: SignedIn = Depends(page(Permission.MESSAGES_READ)),
) -> Response:
    with session_scope(readonly=True) as session:
        template = service.templates.get(session, key, channel)
    if template is None:
        raise NotFound(f"no {channel.value} template {key!r}")
    return _editor(request, staff, key, channel, template, locale=locale, saved=saved)


def _editor(
    request: Request,
    staff: SignedIn,
    key: str,
    channel: MessageChannel,
    template: TemplateRead | None,
    *,
    locale: str | None,
    form: dict[str, str] | None = None,
    problems: list[dict[str, Any]] | None = None,
    saved: int | None = None,
) -> Response:
    default_locale = template.default_locale if template else "en"
    locale = locale or default_locale
    if form is not None:
        values = {name: form.get(f"f_{name}", "") for name, _label, _kind in FIELDS[channel]}
        meta: dict[str, Any] = {n: form.get(n, "") for n in ("name", "category", "topic")}
        meta |= {"strict": form.get("strict") == "on", "default_locale": form.get("default_locale")}
    else:
        stored = template.locales.get(locale, {}) if template else {}
        values = field_values(channel, stored)
        meta = {
            "name": template.name if template else key.replace("_", " ").capitalize(),
            "category": template.category.value if template else Category.TRANSACTIONAL.value,
            "topic": template.topic if template else "",
            "strict": template.strict if template else True,
            "default_locale": default_locale,
        }
    return render(
        request,
        "messages/staff/template_edit.html",
        staff,
        status=422 if problems else 200,
        title=f"{key} · {channel.value}",
        key=key,
        channel=channel,
        stored=template,
        locale=locale,
        fields=FIELDS[channel],
        values=values,
        meta=meta,
        categories=list(Category),
        problems=problems or [],
        saved=saved,
    )


@router.post("/messages/templates/{key}/{channel}", response_class=HTMLResponse)
def save_template(
    request: Request,
    key: str,
    channel: MessageChannel,
    form: dict[str, str] = Depends(form_fields),
    staff: SignedIn = Depends(page(Permission.MESSAGES_WRITE)),
) -> Response:
    """A new version with this locale's fields (the other locales as they are); with
    problems, the editor again (422) with each one, and nothing saved."""
    locale = form.get("locale", "").strip() or "en"
    if not _KEY.match(key):
        problem = {"locale": None, "field": "key", "message": "not a valid template key"}
        return _editor(
            request, staff, key, channel, None, locale=locale, form=form, problems=[problem]
        )
    template: TemplateRead | None = None
    try:
        with session_scope() as session:
            template = service.templates.get(session, key, channel)
            if template is not None and form.get("new") == "1":
                raise RegularsError(f"a {channel.value} template {key!r} exists already; edit it")
            locales = dict(template.locales) if template else {}
            locales[locale] = source_of(channel, form)
            data = TemplateWrite(
                name=form.get("name", "").strip() or key,
                category=Category(form.get("category") or Category.TRANSACTIONAL),
                topic=form.get("topic", "").strip(),
                strict=form.get("strict") == "on",
                default_locale=form.get("default_locale", "").strip() or locale,
                locales=locales,
            )
            saved = service.templates.save(session, key, channel, data)
    except (RegularsError, ValidationError, ValueError) as error:
        problems = problems_of(error, locale)
        return _editor(
            request, staff, key, channel, template, locale=locale, form=form, problems=problems
        )
    target = f"/messages/templates/{key}/{channel.value}?locale={locale}&saved={saved.version}"
    return RedirectResponse(target, status_code=303)


@router.post("/messages/templates/{key}/{channel}/preview", response_class=HTMLResponse)
def preview_template(
    request: Request,
    key: str,
    channel: MessageChannel,
    form: dict[str, str] = Depends(form_fields),
    staff: SignedIn = Depends(page(Permission.MESSAGES_READ)),
) -> Response:
    """The unsaved fields rendered for one customer, with the policy verdict (a fragment)."""
    customer = form.get("customer", "").strip()
    locale = form.get("locale", "").strip() or None
    values: dict[str, Any] = {"channel": channel, "customer": customer, "in_preview": True}
    status = 200
    if not customer:
        values["hint"] = "Give a customer's id or email to see the message as they would."
    else:
        try:
            category = Category(form.get("category") or Category.TRANSACTIONAL)
            event = _event_properties(form.get("event", ""))
            with session_scope(readonly=True) as session:
                values["preview"] = service.preview_draft(
                    session,
                    channel,
                    source_of(channel, form),
                    customer=customer,
                    locale=locale,
                    category=category,
                    event=event,
                )
                values["to"] = _address(session, customer, channel)
        except RegularsError as error:
            status = 422 if error.status in (404, 409, 422) else error.status
            values["problems"] = problems_of(error, locale or "")
    values["sender"] = get_settings().email_from
    return render(request, "messages/staff/_preview.html", staff, status=status, **values)


def _event_properties(text: str) -> dict[str, Any]:
    """The sample event's properties typed in the preview: a JSON object, or nothing."""
    if not text.strip():
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationFailed(
            f"the event is not JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from None
    if not isinstance(parsed, dict):
        raise ValidationFailed('the event is a JSON object, e.g. {"order_id": "1001"}')
    return parsed


def _address(session: Session, customer: str, channel: MessageChannel) -> str | None:
    """Where the message would go: the customer's email address or phone number."""
    customer_id = customers.find_customer(session, customer)
    found = customers.get_customer(session, customer_id) if customer_id else None
    if found is None:
        return None
    if channel == MessageChannel.EMAIL:
        return found.email
    if channel in (MessageChannel.SMS, MessageChannel.WHATSAPP):
        return found.phone
    return None
