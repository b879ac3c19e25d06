"""The identity part of Settings: sources and API keys (a secret shown once), staff users by
role, with the owner protected from admins and the CSRF token required."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from regulars.app import create_app
from regulars.db import Database, session_scope
from regulars.identity import service
from regulars.identity import staff as staff_service
from regulars.identity.models import ApiKeyScope, Role, StaffUser
from tests.identity.keys import bearer
from tests.staff import make_user, signed_in_as

_SECRET = re.compile(r'class="secret" readonly value="([^"]+)"')


@pytest.fixture
def client(database: Database) -> TestClient:
    return TestClient(create_app(with_worker=False))


def _secret(text: str) -> str:
    found = _SECRET.search(text)
    assert found is not None, "no secret on the page"
    return found.group(1)


def _user(email: str) -> StaffUser:
    with session_scope() as session:
        found = staff_service.get_user(session, email)
        session.expunge(found)
    return found


def test_api_key_made_on_the_page_works_and_its_secret_is_shown_once(
    client: TestClient,
) -> None:
    csrf = signed_in_as(client, Role.ADMIN)
    answer = client.post(
        "/settings/api-keys", data={"name": "reporting", "scope": "read", "csrf_token": csrf}
    )
    assert answer.status_code == 201
    secret = _secret(answer.text)
    assert client.get("/api/customers", headers=bearer(secret)).status_code == 200
    listed = client.get("/settings")
    assert listed.status_code == 200
    assert "reporting" in listed.text
    assert secret[:10] in listed.text  # the prefix tells it apart
    assert secret not in listed.text


def test_api_key_with_an_unknown_scope_is_422_and_made_nowhere(client: TestClient) -> None:
    csrf = signed_in_as(client, Role.ADMIN)
    answer = client.post(
        "/settings/api-keys", data={"name": "x", "scope": "root", "csrf_token": csrf}
    )
    assert answer.status_code == 422
    assert "choose a scope" in answer.text
    with session_scope() as session:
        assert list(service.list_api_keys(session)) == []


def test_revoked_key_is_refused_by_the_api(client: TestClient) -> None:
    csrf = signed_in_as(client, Role.ADMIN)
    with session_scope() as session:
        api_key, secret = service.create_api_key(session, "old", ApiKeyScope.READ)
        key_id = api_key.id
    answer = client.post(
        f"/settings/api-keys/{key_id}/revoke", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert answer.status_code == 303
    assert client.get("/api/customers", headers=bearer(secret)).status_code == 401
    assert "revoked" in client.get("/settings").text


def test_source_made_on_the_page_is_listed_with_its_write_key(client: TestClient) -> None:
    csrf = signed_in_as(client, Role.OWNER)
    answer = client.post("/settings/sources", data={"name": "web shop", "csrf_token": csrf})
    assert answer.status_code == 200  # after the redirect
    with session_scope() as session:
        (source,) = service.list_sources(session)
        write_key = source.write_key
    assert source.name == "web shop"
    assert write_key in answer.text
    again = client.post("/settings/sources", data={"name": "web shop", "csrf_token": csrf})
    assert again.status_code == 409


def test_settings_home_has_empty_states_and_links(client: TestClient) -> None:
    signed_in_as(client, Role.ADMIN)
    page = client.get("/settings").text
    assert "No sources yet" in page and "No API keys yet" in page
    for link in ("/settings/users", "/settings/providers", "/settings/policies"):
        assert f'href="{link}"' in page


@pytest.mark.parametrize("role", [Role.MARKETER, Role.AGENT, Role.ANALYST])
def test_settings_and_users_are_403_for_other_roles(client: TestClient, role: Role) -> None:
    csrf = signed_in_as(client, role)
    assert client.get("/settings").status_code == 403
    assert client.get("/settings/users").status_code == 403
    answer = client.post(
        "/settings/users",
        data={
            "email": "x@staff.example",
            "name": "X",
            "role": "owner",
            "generate": "1",
            "csrf_token": csrf,
        },
    )
    assert answer.status_code == 403
    with session_scope() as session:
        assert all(u.email != "x@staff.example" for u in staff_service.list_users(session))


def test_users_page_lists_users_with_role_and_state(client: TestClient) -> None:
    make_user(Role.AGENT, email="agent@staff.example")
    signed_in_as(client, Role.ADMIN)
    page = client.get("/settings/users")
    assert page.status_code == 200
    assert "agent@staff.example" in page.text and "admin@staff.example" in page.text
    assert "never" in page.text  # the agent never signed in


def test_create_user_with_a_generated_password_that_signs_in(client: TestClient) -> None:
    csrf = signed_in_as(client, Role.ADMIN)
    answer = client.post(
        "/settings/users",
        data={
            "email": "new@staff.example",
            "name": "New",
            "role": "marketer",
            "generate": "1",
            "csrf_token": csrf,
        },
    )
    assert answer.status_code == 200
    password = _secret(answer.text)
    assert _user("new@staff.example").role == Role.MARKETER
    assert password not in client.get("/settings/users").text
    with session_scope() as session:
        assert staff_service.sign_in(session, "new@staff.example", password, ip="t") is not None


def test_create_user_with_a_short_password_is_422(client: TestClient) -> None:
    csrf = signed_in_as(client, Role.ADMIN)
    answer = client.post(
        "/settings/users",
        data={
            "email": "new@staff.example",
            "name": "New",
            "role": "agent",
            "password": "short",
            "csrf_token": csrf,
        },
    )
    assert answer.status_code == 422
    assert "a password has 10 to 200 characters" in answer.text
    with session_scope() as session:
        assert all(u.email != "new@staff.example" for u in staff_service.list_users(session))


def test_admin_cannot_disable_demote_or_create_an_owner(client: TestClient) -> None:
    make_user(Role.OWNER, email="owner@staff.example")
    owner = _user("owner@staff.example")
    csrf = signed_in_as(client, Role.ADMIN)
    disable = client.post(f"/settings/users/{owner.id}/disable", data={"csrf_token": csrf})
    assert disable.status_code == 403
    assert "cannot manage a user with role owner" in disable.text
    demote = client.post(
        f"/settings/users/{owner.id}/role", data={"role": "agent", "csrf_token": csrf}
    )
    assert demote.status_code == 403
    created = client.post(
        "/settings/users",
        data={
            "email": "o2@staff.example",
            "name": "O",
            "role": "owner",
            "generate": "1",
            "csrf_token": csrf,
        },
    )
    assert created.status_code == 403
    after = _user("owner@staff.example")
    assert after.disabled_at is None and after.role == Role.OWNER


def test_the_last_owner_cannot_be_demoted(client: TestClient) -> None:
    csrf = signed_in_as(client, Role.OWNER)
    me = _user("owner@staff.example")
    answer = client.post(
        f"/settings/users/{me.id}/role", data={"role": "admin", "csrf_token": csrf}
    )
    assert answer.status_code == 409
    assert "last active owner" in answer.text
    assert _user("owner@staff.example").role == Role.OWNER


def test_admin_changes_a_role_disables_enables_and_resets(client: TestClient) -> None:
    make_user(Role.AGENT, email="agent@staff.example")
    agent = _user("agent@staff.example")
    csrf = signed_in_as(client, Role.ADMIN)
    base = f"/settings/users/{agent.id}"
    role = client.post(f"{base}/role", data={"role": "analyst", "csrf_token": csrf})
    assert role.status_code == 200 and _user(agent.email).role == Role.ANALYST
    client.post(f"{base}/disable", data={"csrf_token": csrf})
    assert _user(agent.email).disabled_at is not None
    client.post(f"{base}/enable", data={"csrf_token": csrf})
    assert _user(agent.email).disabled_at is None
    reset = client.post(f"{base}/password", data={"generate": "1", "csrf_token": csrf})
    password = _secret(reset.text)
    with session_scope() as session:
        assert staff_service.sign_in(session, agent.email, password, ip="t") is not None


def test_creating_a_user_without_the_csrf_token_is_403_and_creates_nobody(
    client: TestClient,
) -> None:
    signed_in_as(client, Role.OWNER)
    answer = client.post(
        "/settings/users",
        data={"email": "new@staff.example", "name": "New", "role": "agent", "generate": "1"},
    )
    assert answer.status_code == 403
    with session_scope() as session:
        assert all(u.email != "new@staff.example" for u in staff_service.list_users(session))
