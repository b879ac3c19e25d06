"""Dashboard pages of Settings that belong to identity: sources and their write keys, API keys
(a new key's secret is shown once, on the answer to the form), and staff users.

Users are changed through `identity.staff` with `actor=` the signed-in role, so an admin is
refused (403) on an owner, and the last owner cannot be demoted or disabled (409).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from regulars.db import session_scope
from regulars.errors import Conflict, Forbidden, NotFound, RegularsError, ValidationFailed
from regulars.identity import service
from regulars.identity import staff as staff_service
from regulars.identity.models import ApiKeyScope, Role
from regulars.identity.roles import ROLE_SUMMARIES, Permission, may_manage
from regulars.identity.staff import SignedIn
from regulars.pages import page, render

router = APIRouter(include_in_schema=False)

can_manage_settings = page(Permission.SETTINGS_MANAGE)
can_manage_users = page(Permission.USERS_MANAGE)

EXPECTED = (ValidationFailed, Conflict, Forbidden, NotFound)
DONE = {
    "source": "Source created. Give its write key to the code that tracks events.",
    "revoked": "API key revoked: calls with it now answer 401.",
    "created": "User created. They can sign in with the password you gave.",
    "role": "Role changed.",
    "disabled": "User disabled and signed out everywhere.",
    "enabled": "User enabled: they can sign in again.",
    "password": "Password reset; the user was signed out everywhere.",
}


def _done(done: str) -> str:
    return DONE.get(done, "")


def _apply(
    request: Request,
    staff: SignedIn,
    action: Callable[[Session], object],
    *,
    back: str,
    done: str,
) -> Response:
    """Run `action` in one transaction, then redirect to the page `back` with `done`'s message;
    an expected error shows that page again with it, at the error's status."""
    try:
        with session_scope() as session:
            action(session)
    except EXPECTED as exc:
        return _PAGES[back](request, staff, error=exc)
    return RedirectResponse(f"{back}?done={done}", status_code=303)


# --- sources and API keys ---


@router.get("/settings")
def settings_home(
    request: Request,
    done: str = Query("", max_length=20),
    staff: SignedIn = Depends(can_manage_settings),
) -> HTMLResponse:
    return _settings_page(request, staff, message=_done(done))


def _settings_page(
    request: Request, staff: SignedIn, *, message: str = "", error: RegularsError | None = None
) -> HTMLResponse:
    with session_scope(readonly=True) as session:
        sources = list(service.list_sources(session))
        api_keys = list(service.list_api_keys(session))
    return render(
        request,
        "settings/home.html",
        staff,
        status=error.status if error is not None else 200,
        title="Settings",
        sources=sources,
        api_keys=api_keys,
        scopes=list(ApiKeyScope),
        message=message,
        error=error,
    )


@router.post("/settings/sources")
def create_source(
    request: Request,
    name: str = Form("", max_length=1000),
    staff: SignedIn = Depends(can_manage_settings),
) -> Response:
    return _apply(
        request,
        staff,
        lambda session: service.create_source(session, name),
        back="/settings",
        done="source",
    )


@router.post("/settings/api-keys")
def create_api_key(
    request: Request,
    name: str = Form("", max_length=1000),
    scope: str = Form("", max_length=20),
    staff: SignedIn = Depends(can_manage_settings),
) -> Response:
    """The answer page is the only place the secret is ever shown."""
    try:
        if scope not in set(ApiKeyScope):
            raise ValidationFailed("choose a scope: read, write or admin")
        with session_scope() as session:
            api_key, secret = service.create_api_key(session, name, ApiKeyScope(scope))
            what = f"API key “{api_key.name}” (scope {api_key.scope})"
    except EXPECTED as exc:
        return _settings_page(request, staff, error=exc)
    return render(
        request,
        "settings/secret.html",
        staff,
        status=201,
        title="API key created",
        what=what,
        secret=secret,
        back="/settings",
        hint="Send it as `Authorization: Bearer <key>`. Only its SHA-256 is stored: copy it "
        "now, it is not shown again.",
    )


@router.post("/settings/api-keys/{api_key_id}/revoke")
def revoke_api_key(
    request: Request, api_key_id: str, staff: SignedIn = Depends(can_manage_settings)
) -> Response:
    return _apply(
        request,
        staff,
        lambda session: service.revoke_api_key(session, api_key_id),
        back="/settings",
        done="revoked",
    )


# --- staff users ---


@router.get("/settings/users")
def users_page(
    request: Request,
    done: str = Query("", max_length=20),
    staff: SignedIn = Depends(can_manage_users),
) -> HTMLResponse:
    return _users_page(request, staff, message=_done(done))


def _users_page(
    request: Request, staff: SignedIn, *, message: str = "", error: RegularsError | None = None
) -> HTMLResponse:
    with session_scope(readonly=True) as session:
        users = list(staff_service.list_users(session))
    return render(
        request,
        "settings/users.html",
        staff,
        status=error.status if error is not None else 200,
        title="Users",
        users=users,
        roles=[role for role in Role if may_manage(staff.role, role)],
        summaries=ROLE_SUMMARIES,
        manageable={u.id for u in users if may_manage(staff.role, Role(u.role))},
        message=message,
        error=error,
    )


_PAGES: dict[str, Callable[..., HTMLResponse]] = {
    "/settings": _settings_page,
    "/settings/users": _users_page,
}


def _role(value: str) -> Role:
    if value not in set(Role):
        raise ValidationFailed(f"choose a role: {', '.join(Role)}")
    return Role(value)


def _password(password: str, generate: str) -> tuple[str, bool]:
    """The password typed, or a generated one (True: show it once)."""
    if generate:
        return staff_service.generate_password(), True
    if not password:
        raise ValidationFailed("type a password, or tick “generate one”")
    return password, False


def _password_shown(request: Request, staff: SignedIn, email: str, password: str) -> Response:
    return render(
        request,
        "settings/secret.html",
        staff,
        title="Password",
        what=f"the password of {email}",
        secret=password,
        back="/settings/users",
        hint="Hand it over privately: it is not shown again (a lost one needs another reset).",
    )


@router.post("/settings/users")
def create_user(
    request: Request,
    email: str = Form("", max_length=320),
    name: str = Form("", max_length=1000),
    role: str = Form("", max_length=20),
    password: str = Form("", max_length=1000),
    generate: str = Form("", max_length=10),
    staff: SignedIn = Depends(can_manage_users),
) -> Response:
    try:
        wanted = _role(role)
        secret, generated = _password(password, generate)
        with session_scope() as session:
            user = staff_service.create_user(
                session, email, name=name, role=wanted, password=secret, actor=staff.role
            )
            created = user.email
    except EXPECTED as exc:
        return _users_page(request, staff, error=exc)
    if generated:
        return _password_shown(request, staff, created, secret)
    return RedirectResponse("/settings/users?done=created", status_code=303)


@router.post("/settings/users/{user_id}/role")
def change_role(
    request: Request,
    user_id: str,
    role: str = Form("", max_length=20),
    staff: SignedIn = Depends(can_manage_users),
) -> Response:
    return _apply(
        request,
        staff,
        lambda session: staff_service.set_role(session, user_id, _role(role), actor=staff.role),
        back="/settings/users",
        done="role",
    )


@router.post("/settings/users/{user_id}/disable")
def disable_user(
    request: Request, user_id: str, staff: SignedIn = Depends(can_manage_users)
) -> Response:
    return _apply(
        request,
        staff,
        lambda session: staff_service.disable_user(session, user_id, actor=staff.role),
        back="/settings/users",
        done="disabled",
    )


@router.post("/settings/users/{user_id}/enable")
def enable_user(
    request: Request, user_id: str, staff: SignedIn = Depends(can_manage_users)
) -> Response:
    return _apply(
        request,
        staff,
        lambda session: staff_service.enable_user(session, user_id, actor=staff.role),
        back="/settings/users",
        done="enabled",
    )


@router.post("/settings/users/{user_id}/password")
def reset_password(
    request: Request,
    user_id: str,
    password: str = Form("", max_length=1000),
    generate: str = Form("", max_length=10),
    staff: SignedIn = Depends(can_manage_users),
) -> Response:
    try:
        secret, generated = _password(password, generate)
        with session_scope() as session:
            email = staff_service.reset_password(session, user_id, secret, actor=staff.role).email
    except EXPECTED as exc:
        return _users_page(request, staff, error=exc)
    if generated:
        return _password_shown(request, staff, email, secret)
    return RedirectResponse("/settings/users?done=password", status_code=303)
