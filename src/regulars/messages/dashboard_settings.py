"""Settings pages of messages: channel providers (fail-over order, secrets masked, save, a
test send) and the sending policies (frequency caps, quiet hours: REGULARS_* settings,
shown read-only with the variable that changes each)."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from regulars.config import get_settings
from regulars.db import session_scope
from regulars.errors import RegularsError
from regulars.identity.roles import Permission
from regulars.identity.staff import SignedIn
from regulars.messages import service
from regulars.messages.channels import TRANSPORTS
from regulars.messages.models import MessageChannel
from regulars.messages.schemas import KEY_PATTERN, ProviderRead, ProviderWrite
from regulars.pages import form_fields, page, render

router = APIRouter(include_in_schema=False)
MASK = "********"

# The settings behind the policies, in the order the page shows them.
POLICY_SETTINGS = (
    ("frequency_caps", "Frequency caps (marketing only): CHANNEL-or-all:COUNT/WINDOW"),
    ("quiet_hours_start", "Quiet hours start, in each customer's time zone"),
    ("quiet_hours_end", "Quiet hours end"),
    ("quiet_hours_channels", "Channels that keep quiet hours"),
    ("quiet_hours_transactional", "Quiet hours hold transactional messages too"),
    ("default_timezone", "Time zone of customers without one"),
    ("auto_channel_order", "Channel order for `auto`"),
    ("delivery_max_attempts", "Attempts before a delivery fails"),
)


def _by_channel(found: list[ProviderRead]) -> dict[str, list[ProviderRead]]:
    """Each channel's providers in fail-over order (enabled first, by priority)."""
    grouped: dict[str, list[ProviderRead]] = {c.value: [] for c in MessageChannel}
    for provider in sorted(found, key=lambda p: (not p.enabled, p.priority, p.name)):
        grouped[provider.channel.value].append(provider)
    return grouped


def _providers(
    request: Request,
    staff: SignedIn,
    *,
    form: dict[str, str] | None = None,
    problems: list[str] | None = None,
    check: service.ProviderCheck | None = None,
    status: int = 200,
) -> Response:
    with session_scope(readonly=True) as session:
        found = service.providers.list_all(session)
    return render(
        request,
        "messages/staff/providers.html",
        staff,
        status=status,
        title="Channel providers",
        by_channel=_by_channel(found),
        count=len(found),
        kinds=sorted(TRANSPORTS),
        channels=list(MessageChannel),
        form=form or {},
        problems=problems or [],
        check=check,
    )


@router.get("/settings/providers", response_class=HTMLResponse)
def providers_page(
    request: Request,
    saved: str | None = None,
    staff: SignedIn = Depends(page(Permission.SETTINGS_MANAGE)),
) -> Response:
    return _providers(request, staff, form={"saved": saved or ""})


@router.post("/settings/providers", response_class=HTMLResponse)
def save_provider(
    request: Request,
    form: dict[str, str] = Depends(form_fields),
    staff: SignedIn = Depends(page(Permission.SETTINGS_MANAGE)),
) -> Response:
    """Create or replace a provider; a secret left masked keeps its stored value."""
    name = form.get("name", "").strip()
    try:
        _checked_name(name)
        config = json.loads(form.get("config", "").strip() or "{}")
        if not isinstance(config, dict):
            raise ValueError('the config is a JSON object, e.g. {"host": "smtp.example.com"}')
        with session_scope() as session:
            stored = service.providers.get(session, name)
            if stored is not None:
                config = _unmasked(config, stored.config)
            data = ProviderWrite(
                channel=form.get("channel", ""),
                kind=form.get("kind", ""),
                config=config,
                priority=int(form.get("priority") or 0),
                enabled=form.get("enabled") == "on",
                rate_per_second=float(form["rate"]) if form.get("rate", "").strip() else None,
            )
            service.providers.save(session, name, data)
    except ValidationError as error:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()]
        return _providers(request, staff, form=form, problems=problems, status=422)
    except (RegularsError, ValueError) as error:
        message = error.message if isinstance(error, RegularsError) else str(error)
        return _providers(request, staff, form=form, problems=[message], status=422)
    return RedirectResponse(f"/settings/providers?saved={name}", status_code=303)


def _checked_name(name: str) -> str:
    if not re.match(KEY_PATTERN, name):
        raise ValueError("the name is lowercase letters, digits, `_`, `.` or `-`, e.g. postmark")
    return name


def _unmasked(config: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    return {k: stored.get(k, v) if v == MASK else v for k, v in config.items()}


@router.post("/settings/providers/{name}/test", response_class=HTMLResponse)
def send_provider_test(
    request: Request,
    name: str,
    form: dict[str, str] = Depends(form_fields),
    staff: SignedIn = Depends(page(Permission.SETTINGS_MANAGE)),
) -> Response:
    """One test message through this provider; the page shows what it answered."""
    try:
        with session_scope(readonly=True) as session:
            check = service.check_provider(session, name, recipient=form.get("recipient", ""))
    except RegularsError as error:
        status = 422 if error.status in (404, 422) else error.status
        return _providers(request, staff, problems=[error.message], status=status)
    return _providers(request, staff, check=check)


@router.get("/settings/policies", response_class=HTMLResponse)
def policies_page(
    request: Request, staff: SignedIn = Depends(page(Permission.SETTINGS_MANAGE))
) -> Response:
    settings = get_settings()
    rows = []
    for name, label in POLICY_SETTINGS:
        value = getattr(settings, name)
        if isinstance(value, list):
            shown = ", ".join(str(item) for item in value) or "(none)"
        elif isinstance(value, bool):
            shown = "yes" if value else "no"
        else:
            shown = str(value)
        rows.append(
            {"name": name, "label": label, "value": shown, "env": f"REGULARS_{name.upper()}"}
        )
    return render(
        request, "messages/staff/policies.html", staff, title="Sending policies", rows=rows
    )
