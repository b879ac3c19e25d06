"""API keys and an app client for tests of the REST API."""

from __future__ import annotations

from regulars.db import session_scope
from regulars.identity.models import ApiKeyScope
from regulars.identity.service import create_api_key


def new_key(scope: ApiKeyScope, name: str = "tests") -> str:
    with session_scope() as session:
        _api_key, secret = create_api_key(session, f"{name}-{scope.value}", scope)
    return secret


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def headers(scope: ApiKeyScope) -> dict[str, str]:
    return bearer(new_key(scope))
