"""Authentication for the REST API: `Depends(require(Permission.CUSTOMERS_READ))` lets in an API
key whose scope reaches the permission, or a dashboard session whose role grants it."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from regulars.db import session_scope
from regulars.errors import Forbidden, Unauthorized
from regulars.identity import service
from regulars.identity.models import ApiKeyScope
from regulars.identity.roles import Permission
from regulars.kit import clock
from regulars.pages import CSRF_HEADER, GUARDS, SAFE_METHODS, check_csrf, check_role, signed_in

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key made with `regulars apikeys create NAME --scope read|write|admin`.",
)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: an API key, or a staff user signed in to the dashboard (whose session
    cookie also opens the API, so the dashboard's scripts and the API docs work)."""

    name: str
    api_key_id: str | None = None
    staff_user_id: str | None = None

    @property
    def label(self) -> str:
        """How audit rows name the caller (no secret in it)."""
        if self.api_key_id is not None:
            return f"api_key:{self.api_key_id}"
        return f"staff:{self.staff_user_id}"


def _authenticate(key: str) -> tuple[Caller, ApiKeyScope]:
    with session_scope(readonly=True) as session:
        api_key = service.authenticate(session, key)
        if api_key is None:
            raise Unauthorized("API key is unknown or revoked")
        caller = Caller(api_key.name, api_key_id=api_key.id)
        scope = ApiKeyScope(api_key.scope)
        now = clock.now()
        stale = service.needs_use_recorded(api_key, at=now)
    if stale:
        with session_scope() as session:
            service.record_use(session, api_key.id, at=now)
    return caller, scope


def _key_caller(key: str, needed: Permission) -> Caller:
    caller, scope = _authenticate(key)
    if not service.allows(scope, needed.api_scope):
        raise Forbidden(
            f"this API key has scope {scope.value!r}; this call needs scope "
            f"{needed.api_scope.value!r}",
            details={"needed_scope": needed.api_scope.value, "key_scope": scope.value},
        )
    return caller


async def _staff_caller(request: Request, needed: Permission) -> Caller | None:
    staff = await run_in_threadpool(signed_in, request)
    if staff is None:
        return None
    if request.method not in SAFE_METHODS:
        check_csrf(staff, request.headers.get(CSRF_HEADER, ""))
    check_role(staff, needed)
    return Caller(staff.name, staff_user_id=staff.user_id)


def require(needed: Permission) -> Callable[..., Awaitable[Caller]]:
    """A dependency that answers 401 without a valid API key or dashboard session, and 403
    when the key's scope or the user's role does not grant `needed`."""

    async def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ) -> Caller:
        if credentials is not None and credentials.credentials.strip():
            return await run_in_threadpool(_key_caller, credentials.credentials.strip(), needed)
        caller = await _staff_caller(request, needed)
        if caller is None:
            raise Unauthorized("send Authorization: Bearer <API key>")
        return caller

    GUARDS[dependency] = needed
    return dependency


# --- write keys: the store's site and SDKs (Segment-style HTTP Basic user) ---

MAX_WRITE_KEY_CHARS = 64


def write_key_of(authorization: str | None, body: Mapping[str, object]) -> str:
    """The write key from HTTP Basic (user name, empty password) or else the body's writeKey."""
    key = _basic_user(authorization) if authorization else ""
    if not key:
        in_body = body.get("writeKey")
        key = in_body if isinstance(in_body, str) else ""
    if not key:
        raise Unauthorized(
            "no write key: send it as the HTTP Basic user name or as writeKey in the body"
        )
    return key


def _basic_user(authorization: str) -> str:
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise Unauthorized("the Authorization header is not valid HTTP Basic") from exc
    return decoded.partition(":")[0]


def authenticate(session: Session, write_key: str) -> str:
    """The id of the enabled source this write key belongs to, or 401."""
    source_id = None
    if len(write_key) <= MAX_WRITE_KEY_CHARS and "\x00" not in write_key:
        source_id = service.enabled_source_id(session, write_key)
    if source_id is None:
        raise Unauthorized("the write key is unknown or its source is disabled")
    return source_id
