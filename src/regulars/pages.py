"""The dashboard's shared plumbing: who is signed in, what their role may see, CSRF, and
rendering a page in the common layout. Each domain's `views.py` builds its pages on it:

    @router.get("/segments")
    def segments(request: Request, staff: SignedIn = Depends(page(Permission.SEGMENTS_READ))):
        return render(request, "segments/list.html", staff, segments=...)

A page dependency answers a redirect to /login without a session, 403 when the role lacks the
permission, and 403 for a POST, PUT, PATCH or DELETE whose CSRF token (form field
`csrf_token` or header `X-CSRF-Token`, which htmx sends from the layout) is not the session's.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from regulars import __version__
from regulars.db import session_scope
from regulars.errors import Forbidden, RegularsError
from regulars.identity import staff as staff_service
from regulars.identity.roles import Permission, role_allows
from regulars.identity.staff import SignedIn
from regulars.kit import clock

SESSION_COOKIE = "regulars_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
NOT_DASHBOARD = ("/api/", "/v1/", "/m/", "/webhooks/", "/push/", "/healthz", "/static/")
NO_STORE = {"Cache-Control": "no-store, private"}

environment = Environment(
    loader=PackageLoader("regulars", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


class SignInRequired(RegularsError):
    code = "sign_in_required"
    status = 401


@dataclass(frozen=True, slots=True)
class NavItem:
    label: str
    href: str
    permission: Permission


NAVIGATION = (
    NavItem("Overview", "/", Permission.CUSTOMERS_READ),
    NavItem("Customers", "/customers", Permission.CUSTOMERS_READ),
    NavItem("Segments", "/segments", Permission.SEGMENTS_READ),
    NavItem("Messages", "/messages/templates", Permission.MESSAGES_READ),
    NavItem("Journeys", "/journeys", Permission.JOURNEYS_READ),
    NavItem("Settings", "/settings", Permission.SETTINGS_MANAGE),
)


# Every guard dependency made by `page()` or `identity.api.require()`, with the permission it
# checks (None: any signed-in user). tests/test_access.py walks every route through this.
GUARDS: dict[Callable[..., object], Permission | None] = {}


def is_dashboard_path(path: str) -> bool:
    return not path.startswith(NOT_DASHBOARD)


def signed_in(request: Request) -> SignedIn | None:
    """The live session behind the request's cookie, looked up once per request. A read
    transaction (on SQLite, page views never wait for the writer), and a short write once a
    minute to record the visit, as API keys record their use."""
    cached = getattr(request.state, "staff", None)
    if cached is not None:
        return cached if isinstance(cached, SignedIn) else None
    token = request.cookies.get(SESSION_COOKIE, "")
    found = None
    if token:
        with session_scope(readonly=True) as session:
            found = staff_service.session_for(session, token)
    now = clock.now()
    if found is not None and staff_service.needs_touch(found, at=now):
        with session_scope() as session:
            staff_service.touch(session, found.session_id, at=now)
    request.state.staff = found if found is not None else False
    return found


async def csrf_token_sent(request: Request) -> str:
    header = request.headers.get(CSRF_HEADER, "")
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def form_fields(request: Request) -> dict[str, str]:
    """The posted form's text fields, as a dependency (the page guard has read the form for
    its CSRF token already; Starlette keeps it)."""
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


def check_csrf(staff: SignedIn, sent: str) -> None:
    if not sent or not hmac.compare_digest(sent, staff.csrf_token):
        raise Forbidden(
            "the form's security token is missing or stale; reload the page and try again",
            code="csrf_failed",
        )


def check_role(staff: SignedIn, permission: Permission | None) -> None:
    """403 unless the staff user's role grants `permission` (None: any signed-in user)."""
    if permission is not None and not role_allows(staff.role, permission):
        raise Forbidden(
            f"your role ({staff.role}) may not do this; it needs {permission}",
            details={"needed": permission.value, "role": staff.role.value},
        )


def page(permission: Permission | None) -> Callable[[Request], Awaitable[SignedIn]]:
    """A dependency for a dashboard route that needs `permission` (None: any signed-in user)."""

    async def dependency(request: Request) -> SignedIn:
        staff = await run_in_threadpool(signed_in, request)
        if staff is None:
            raise SignInRequired("sign in to see this page")
        if request.method not in SAFE_METHODS:
            check_csrf(staff, await csrf_token_sent(request))
        check_role(staff, permission)
        return staff

    GUARDS[dependency] = permission
    return dependency


def may(staff: SignedIn | None, permission: Permission | str) -> bool:
    return staff is not None and role_allows(staff.role, Permission(permission))


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M")


def _number(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


environment.filters["when"] = _when
environment.filters["number"] = _number
environment.filters["urlquote"] = lambda value: quote(str(value), safe="")
environment.globals["version"] = __version__


def render(
    request: Request,
    template: str,
    staff: SignedIn | None,
    *,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    """`template` rendered with the layout's values (navigation for the role, the CSRF token);
    a fragment is a template that extends nothing."""
    context = {
        "request": request,
        "staff": staff,
        "path": request.url.path,
        "nav": [item for item in NAVIGATION if may(staff, item.permission)],
        "may": lambda permission: may(staff, permission),
        "csrf_token": staff.csrf_token if staff is not None else "",
        **values,
    }
    html = environment.get_template(template).render(context)
    return HTMLResponse(html, status_code=status, headers=NO_STORE)


def error_page(request: Request, error: RegularsError) -> HTMLResponse:
    """The error in the layout, with the navigation when someone is signed in."""
    titles = {403: "Not for your role", 404: "Not found", 429: "Slow down"}
    return render(
        request,
        "dashboard/error.html",
        signed_in(request),
        status=error.status,
        title=titles.get(error.status, "Something went wrong"),
        error=error,
    )
