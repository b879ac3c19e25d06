"""API-key authentication for the REST API: `Depends(require_scope(ApiKeyScope.READ))`."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from regulars.db import session_scope
from regulars.errors import Forbidden, Unauthorized
from regulars.identity import service
from regulars.identity.models import ApiKeyScope, Source
from regulars.kit import clock

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key made with `regulars apikeys create NAME --scope read|write|admin`.",
)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the API key, copied out of the session that found it."""

    api_key_id: str
    name: str
    scope: ApiKeyScope

    @property
    def label(self) -> str:
        """How audit rows name the caller (no secret in it)."""
        return f"api_key:{self.api_key_id}"


def _authenticate(key: str) -> Caller:
    with session_scope(readonly=True) as session:
        api_key = service.authenticate(session, key)
        if api_key is None:
            raise Unauthorized("API key is unknown or revoked")
        caller = Caller(api_key.id, api_key.name, ApiKeyScope(api_key.scope))
        now = clock.now()
        stale = service.needs_use_recorded(api_key, at=now)
    if stale:
        with session_scope() as session:
            service.record_use(session, caller.api_key_id, at=now)
    return caller


def require_scope(needed: ApiKeyScope) -> Callable[..., Caller]:
    """A dependency that answers 401 without a valid key and 403 when its scope is too low."""

    def dependency(
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ) -> Caller:
        if credentials is None or not credentials.credentials.strip():
            raise Unauthorized("send Authorization: Bearer <API key>")
        caller = _authenticate(credentials.credentials.strip())
        if not service.allows(caller.scope, needed):
            raise Forbidden(
                f"this API key has scope {caller.scope.value!r}; "
                f"this call needs scope {needed.value!r}",
                details={"needed_scope": needed.value, "key_scope": caller.scope.value},
            )
        return caller

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


def authenticate(session: Session, write_key: str) -> Source:
    source = None
    if len(write_key) <= MAX_WRITE_KEY_CHARS and "\x00" not in write_key:
        source = service.get_source_by_write_key(session, write_key)
    if source is None or source.disabled_at is not None:
        raise Unauthorized("the write key is unknown or its source is disabled")
    return source
