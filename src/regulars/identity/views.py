"""Dashboard pages of identity: sign in, sign out (here or everywhere)."""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from regulars.config import get_settings
from regulars.db import session_scope
from regulars.identity import staff as staff_service
from regulars.identity.roles import ROLE_PERMISSIONS, ROLE_SUMMARIES
from regulars.identity.staff import SignedIn, TooManyAttempts
from regulars.pages import SESSION_COOKIE, page, render, signed_in

router = APIRouter(include_in_schema=False)

LOGIN_CSRF_COOKIE = "regulars_login_csrf"


def _safe_next(value: str) -> str:
    """Only paths of this site: never `//host` or a full URL (an open redirect)."""
    if value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _secure(request: Request) -> bool:
    mode = get_settings().cookie_secure
    return mode == "always" or (mode == "auto" and request.url.scheme == "https")


def _login_page(
    request: Request, *, next_path: str, email: str = "", message: str = "", status: int = 200
) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "dashboard/login.html",
        None,
        status=status,
        title="Sign in",
        login_csrf=token,
        next=next_path,
        email=email,
        message=message,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/login",
    )
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    if signed_in(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_page(request, next_path=_safe_next(next))


@router.post("/login")
def login(
    request: Request,
    email: str = Form("", max_length=320),
    password: str = Form("", max_length=1000),
    csrf_token: str = Form("", max_length=100),
    next: str = Form("/", max_length=2000),
) -> Response:
    next_path = _safe_next(next)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf_token):
        message = "The sign-in form expired; please try again."
        return _login_page(request, next_path=next_path, email=email, message=message, status=403)
    ip = request.client.host if request.client else ""
    agent = request.headers.get("user-agent", "")
    try:
        with session_scope() as session:
            opened = staff_service.sign_in(session, email, password, ip=ip, user_agent=agent)
    except TooManyAttempts as error:
        return _login_page(
            request, next_path=next_path, email=email, message=error.message, status=429
        )
    if opened is None:
        message = "The email or the password is wrong, or the account is disabled."
        return _login_page(request, next_path=next_path, email=email, message=message, status=401)
    token = opened[1]
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=get_settings().session_max_days * 86400,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


def _signed_out(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=_secure(request), httponly=True)
    return response


@router.post("/logout")
def logout(request: Request, staff: SignedIn = Depends(page(None))) -> Response:
    with session_scope() as session:
        staff_service.sign_out(session, staff.session_id)
    return _signed_out(request)


@router.post("/logout/everywhere")
def logout_everywhere(request: Request, staff: SignedIn = Depends(page(None))) -> Response:
    with session_scope() as session:
        staff_service.sign_out_everywhere(session, staff.user_id)
    return _signed_out(request)


@router.get("/account")
def account(request: Request, staff: SignedIn = Depends(page(None))) -> Response:
    """Who you are, what your role may do, and a button to sign out everywhere."""
    return render(
        request,
        "dashboard/account.html",
        staff,
        title="Your account",
        role_summary=ROLE_SUMMARIES[staff.role],
        permissions=sorted(ROLE_PERMISSIONS[staff.role]),
    )
