"""Staff users and signed-in test clients for tests of the dashboard."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from regulars.db import session_scope
from regulars.identity import staff
from regulars.identity.models import Role

PASSWORD = "correct horse battery"
_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
_CSRF_HEADER = re.compile(r'"X-CSRF-Token": "([^"]+)"')


def make_user(role: Role, *, email: str | None = None, password: str = PASSWORD) -> str:
    email = email or f"{role.value}@staff.example"
    with session_scope() as session:
        staff.create_user(
            session, email, name=f"{role.value.title()} Tester", role=role, password=password
        )
    return email


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> str:
    """Sign in through the real form; answers the session's CSRF token."""
    form = client.get("/login")
    login_token = _CSRF_INPUT.search(form.text)
    assert login_token is not None, form.text
    answer = client.post(
        "/login",
        data={
            "email": email,
            "password": password,
            "csrf_token": login_token.group(1),
            "next": "/",
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return csrf_of(client)


def csrf_of(client: TestClient) -> str:
    page = client.get("/account")
    found = _CSRF_HEADER.search(page.text)
    assert found is not None and found.group(1), "no CSRF token in the signed-in layout"
    return found.group(1)


def signed_in_as(client: TestClient, role: Role) -> str:
    """Create a user with `role`, sign `client` in as them; answers the CSRF token."""
    return sign_in(client, make_user(role))
