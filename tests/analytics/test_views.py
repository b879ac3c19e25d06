"""The overview page: figures from the data made here, the stored snapshot and its age, the
empty state."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from regulars.analytics import service, tasks
from regulars.app import create_app
from regulars.db import Database, session_scope
from regulars.identity.models import Role
from regulars.kit import clock
from regulars.kit.clock import FrozenClock
from tests.customers.helpers import ingest, owner_of
from tests.staff import signed_in_as

NOW = datetime(2026, 5, 20, 10, 42, tzinfo=UTC)


@pytest.fixture
def moved_clock(database: Database) -> Iterator[FrozenClock]:
    with clock.frozen(NOW) as frozen:
        yield frozen


@pytest.fixture
def client(moved_clock: FrozenClock) -> TestClient:
    client = TestClient(create_app(with_worker=False))
    signed_in_as(client, Role.ANALYST)
    return client


def at(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def track(user: str, event: str, days: float, message_id: str, **props: Any) -> None:
    message = {"type": "track", "userId": user, "event": event, "timestamp": at(days)}
    result = ingest([message | {"messageId": message_id, "properties": props}])
    assert result.rejected == []


def chart(page: str, label: str) -> dict[str, Any]:
    found = re.search(r"data-chart='([^']*)' role=\"img\" aria-label=\"" + label, page)
    assert found is not None, f"no chart {label}"
    option: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return option


def kpi(page: str, label: str) -> str:
    found = re.search(r'<div class="value">([^<]*)</div><div class="label">' + label, page)
    assert found is not None, f"no KPI {label}"
    return found.group(1)


def test_overview_counts_what_was_made(client: TestClient) -> None:
    track("ann", "Order Completed", 0.1, "o1", revenue=100.5)
    track("ann", "Order Completed", 2.1, "o2", revenue=20)
    track("bob", "Viewed Product", 2.2, "v1")
    track("old", "Viewed Product", 45, "v2")  # a customer not seen for 45 days
    page = client.get("/").text
    assert kpi(page, "Customers") == "3"
    assert kpi(page, "Active") == "2"
    assert kpi(page, "Events in 30 days") == "3"
    assert kpi(page, r"Revenue from 2 orders") == "120.50"
    events = chart(page, "Events per day")
    assert events["series"][0]["data"][-1] == 1  # today
    assert events["series"][0]["data"][-3] == 2  # two days ago: o2 and v1
    assert sum(events["series"][0]["data"]) == 3
    revenue = chart(page, "Revenue of completed orders")
    assert revenue["series"][0]["data"][-1] == 100.5
    assert revenue["series"][0]["data"][-3] == 20
    assert f'href="/customers/{owner_of("ann")}"' in page
    assert "as of 10:42" in page


def test_page_without_a_snapshot_computes_and_stores_one(client: TestClient) -> None:
    track("ann", "Viewed Product", 0.1, "v1")
    with session_scope(readonly=True) as session:
        assert service.overview(session) is None
    page = client.get("/").text
    assert kpi(page, "Customers") == "1"
    assert "as of 10:42 UTC, refreshed every minute by the worker" in page
    with session_scope(readonly=True) as session:
        stored = service.overview(session)
    assert stored is not None and stored.computed_at == NOW and stored.customers == 1


def test_page_shows_the_stored_figures_until_the_worker_refreshes_them(
    client: TestClient, moved_clock: FrozenClock
) -> None:
    track("ann", "Viewed Product", 0.1, "v1")
    assert kpi(client.get("/").text, "Customers") == "1"
    track("bob", "Viewed Product", 0.1, "v2")
    moved_clock.advance(timedelta(minutes=5))
    stored = client.get("/").text
    assert kpi(stored, "Customers") == "1" and "as of 10:42" in stored
    tasks.refresh({})
    fresh = client.get("/").text
    assert kpi(fresh, "Customers") == "2" and "as of 10:47" in fresh


def test_empty_database_says_how_to_start(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "No customers yet" in page.text
    assert "regulars demo" in page.text and "/v1/track" in page.text


def test_signed_out_visitors_go_to_sign_in(moved_clock: FrozenClock) -> None:
    response = TestClient(create_app(with_worker=False)).get("/", follow_redirects=False)
    assert response.status_code in (302, 303, 307)
    assert "/login" in response.headers["location"]
