"""API-key authentication of the REST API: 401 without a valid key, 403 below the scope needed."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from regulars.app import create_app
from regulars.db import Database, session_scope
from regulars.identity.models import ApiKey, ApiKeyScope
from regulars.identity.service import revoke_api_key
from tests.identity.keys import bearer, new_key


@pytest.fixture
def client(database: Database) -> TestClient:
    return TestClient(create_app(with_worker=False))


def _error(response: object) -> dict[str, object]:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    error: dict[str, object] = body["error"]
    return error


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "rk_just-the-key", "Token abc"],
)
def test_missing_or_malformed_header_is_401_saying_what_to_send(
    client: TestClient, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = client.get("/api/customers", headers=headers)
    assert response.status_code == 401
    error = _error(response)
    assert error["code"] == "unauthorized"
    assert error["message"] == "send Authorization: Bearer <API key>"


def test_unknown_key_is_401(client: TestClient) -> None:
    response = client.get("/api/customers", headers=bearer("rk_not-a-key"))
    assert response.status_code == 401
    assert _error(response)["message"] == "API key is unknown or revoked"


def test_revoked_key_is_401(client: TestClient) -> None:
    key = new_key(ApiKeyScope.ADMIN)
    assert client.get("/api/customers", headers=bearer(key)).status_code == 200
    with session_scope() as session:
        api_key_id = session.scalars(select(ApiKey.id)).one()
        revoke_api_key(session, api_key_id)
    response = client.get("/api/customers", headers=bearer(key))
    assert response.status_code == 401
    assert _error(response)["code"] == "unauthorized"


def test_scheme_name_is_case_insensitive(client: TestClient) -> None:
    key = new_key(ApiKeyScope.READ)
    response = client.get("/api/customers", headers={"Authorization": f"bearer {key}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("scope", "method", "path", "needed"),
    [
        (ApiKeyScope.READ, "PATCH", "/api/customers/x", "write"),
        (ApiKeyScope.READ, "PUT", "/api/customers/x/consents", "write"),
        (ApiKeyScope.READ, "DELETE", "/api/customers/x", "admin"),
        (ApiKeyScope.READ, "GET", "/api/customers/x/export", "admin"),
        (ApiKeyScope.WRITE, "DELETE", "/api/customers/x", "admin"),
        (ApiKeyScope.WRITE, "GET", "/api/customers/x/export", "admin"),
    ],
)
def test_too_low_scope_is_403_naming_the_scope_needed(
    client: TestClient, scope: ApiKeyScope, method: str, path: str, needed: str
) -> None:
    response = client.request(method, path, headers=bearer(new_key(scope)), json={})
    assert response.status_code == 403
    error = _error(response)
    assert error["code"] == "forbidden"
    assert f"needs scope '{needed}'" in str(error["message"])
    assert error["details"] == {"needed_scope": needed, "key_scope": scope.value}


@pytest.mark.parametrize("scope", list(ApiKeyScope))
def test_every_scope_may_read(client: TestClient, scope: ApiKeyScope) -> None:
    response = client.get("/api/customers", headers=bearer(new_key(scope)))
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


def test_use_of_a_key_is_recorded(client: TestClient) -> None:
    key = new_key(ApiKeyScope.READ)
    with session_scope(readonly=True) as session:
        assert session.scalars(select(ApiKey.last_used_at)).one() is None
    client.get("/api/customers", headers=bearer(key))
    with session_scope(readonly=True) as session:
        assert session.scalars(select(ApiKey.last_used_at)).one() is not None


def test_openapi_documents_the_bearer_scheme(client: TestClient) -> None:
    schema = client.get("/api/openapi.json").json()
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
