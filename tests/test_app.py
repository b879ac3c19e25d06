"""The application as a whole: health, OpenAPI, and the one error shape for every failure."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from regulars.app import create_app
from regulars.db import Database


@pytest.fixture
def client(database: Database) -> Iterator[TestClient]:
    with TestClient(create_app(with_worker=False)) as test_client:
        yield test_client


def test_health_answers_ok(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_openapi_lists_the_tracking_and_customer_apis(client: TestClient) -> None:
    paths = client.get("/api/openapi.json").json()["paths"]
    assert "/v1/batch" in paths
    assert "/api/customers/{customer_id}/events" in paths
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


def test_unknown_path_answers_in_the_error_shape(client: TestClient) -> None:
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "Not Found", "details": None}
    }


def test_wrong_method_answers_in_the_error_shape(client: TestClient) -> None:
    response = client.delete("/v1/batch")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in response.headers["allow"]
