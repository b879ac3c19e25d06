"""Every route of the app, walked with every staff role: a route is either public (listed
here, with why) or guarded by one permission, and each role gets through exactly the
guards its permissions open (docs/access.md has the table this checks)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from regulars.app import create_app
from regulars.db import Database
from regulars.identity.models import Role
from regulars.identity.roles import ROLE_PERMISSIONS, Permission
from regulars.pages import GUARDS
from tests.staff import signed_in_as

# Routes anyone may call: customers' links and browsers, providers' callbacks, tracking
# (write keys), the sign-in page itself, health and API docs.
PUBLIC = re.compile(
    r"^(/v1/|/m/|/webhooks/|/push/|/healthz$|/login$|/api/openapi\.json$|/api/docs)"
)
# Signing out ends the session the walk uses; tests/identity covers these two.
SKIPPED = {"/logout", "/logout/everywhere"}


def _flat(routes: Iterable[Any]) -> Iterator[Any]:
    """Each endpoint with its full path; FastAPI 0.16x keeps included routers as one entry
    that lists its routes on demand."""
    for route in routes:
        if hasattr(route, "effective_candidates"):
            yield from _flat(route.effective_candidates())
        elif hasattr(route, "dependant") and hasattr(route, "methods"):
            yield route


def _guard(route: Any) -> tuple[bool, Permission | None]:
    found = [
        GUARDS[dependency.call]
        for dependency in route.dependant.dependencies
        if dependency.call in GUARDS
    ]
    assert len(found) <= 1, f"{route.path} has {len(found)} guards"
    return (True, found[0]) if found else (False, None)


def _routes() -> list[tuple[str, str, Permission | None]]:
    walked = []
    for route in _flat(create_app(with_worker=False).routes):
        if route.path in SKIPPED:
            continue
        guarded, permission = _guard(route)
        if not guarded:
            assert PUBLIC.match(route.path), f"{route.path} has no guard and is not public"
            continue
        for method in sorted(route.methods - {"HEAD"}):
            walked.append((method, route.path, permission))
    return walked


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "no-such-thing", path)


def test_every_route_is_public_or_guarded() -> None:
    routes = _routes()
    assert len(routes) > 60  # the API and the dashboard, not an empty walk
    assert {permission for _method, _path, permission in routes} >= set(Permission)


@pytest.mark.parametrize("role", list(Role))
def test_each_role_passes_exactly_the_guards_its_permissions_open(
    database: Database, role: Role
) -> None:
    client = TestClient(create_app(with_worker=False), follow_redirects=False)
    csrf = signed_in_as(client, role)
    wrong = []
    for method, path, permission in _routes():
        answer = client.request(method, _concrete(path), headers={"X-CSRF-Token": csrf})
        allowed = permission is None or permission in ROLE_PERMISSIONS[role]
        if allowed and answer.status_code in (401, 403):
            wrong.append(f"{method} {path}: {answer.status_code}, expected to be let in")
        if allowed and answer.status_code >= 500:
            wrong.append(f"{method} {path}: {answer.status_code}")
        if not allowed and answer.status_code != 403:
            wrong.append(f"{method} {path}: {answer.status_code}, expected 403")
        is_page = not path.startswith("/api/") and "{" not in path and method == "GET"
        if is_page and allowed and answer.status_code != 200:
            wrong.append(f"{method} {path}: page answered {answer.status_code}")
    assert not wrong, "\n".join(wrong)


def test_a_guarded_route_without_a_session_or_key_asks_for_one(database: Database) -> None:
    client = TestClient(create_app(with_worker=False), follow_redirects=False)
    page = client.get("/customers")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fcustomers"
    api = client.get("/api/customers")
    assert api.status_code == 401
    assert api.json()["error"]["code"] == "unauthorized"


def test_a_staff_session_needs_the_csrf_header_to_change_anything_through_the_api(
    database: Database,
) -> None:
    client = TestClient(create_app(with_worker=False), follow_redirects=False)
    signed_in_as(client, Role.OWNER)
    answer = client.post("/api/segments", json={"key": "vip", "name": "VIP", "rule": {}})
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "csrf_failed"
