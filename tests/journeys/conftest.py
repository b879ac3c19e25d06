"""Shared fixtures of the journeys tests: the messages fixtures (an API client, customers,
templates, a frozen clock at T0), and helpers to track events, publish a journey and run
the worker's rounds at the clock's moment.

    def test_something(journey: JourneyFactory, customer: CustomerFactory, track: Track):
        journey("cart", {...definition...})
        alice = customer("alice", email="alice@example.com")
        track("alice", "Checkout Started", {"checkout_id": "c1"})
        run_worker()
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Protocol

import pytest

from regulars.customers import service as customers
from regulars.db import Database, session_scope
from regulars.journeys import service as journeys
from regulars.journeys import tasks as journey_tasks
from regulars.journeys.schemas import JourneyCreate, JourneyRead
from regulars.kit import clock
from regulars.messages import tasks as message_tasks
from tests.messages.conftest import (  # noqa: F401  (fixtures, found by name)
    api,
    client,
    customer,
    frozen_clock,
    public_url,
    template,
)


class Track(Protocol):
    def __call__(
        self, user_id: str, event: str, properties: Mapping[str, Any] | None = None
    ) -> None: ...


class JourneyFactory(Protocol):
    def __call__(
        self, key: str, definition: Mapping[str, Any], *, publish: bool = True
    ) -> JourneyRead: ...


@pytest.fixture
def track(database: Database) -> Track:
    """Store a track event now (on the regulars clock), as the tracking API would."""
    counter = itertools.count(1)

    def send(user_id: str, event: str, properties: Mapping[str, Any] | None = None) -> None:
        message = {
            "type": "track",
            "userId": user_id,
            "event": event,
            "properties": dict(properties or {}),
            "messageId": f"track-{user_id}-{next(counter)}",
            "timestamp": clock.now().isoformat(),
        }
        with session_scope() as session:
            result = customers.ingest(session, [message], source="tests")
            assert result.rejected == [], result.rejected

    return send


@pytest.fixture
def journey(database: Database) -> JourneyFactory:
    def make(key: str, definition: Mapping[str, Any], *, publish: bool = True) -> JourneyRead:
        with session_scope() as session:
            created = journeys.create(
                session, JourneyCreate(key=key, name=key.title(), definition=dict(definition))
            )
            return journeys.publish(session, key) if publish else created

    return make


def run_worker(*, rounds: int = 5) -> int:
    """Run the journeys queue (and deliver what it queued) at the clock's moment until
    nothing is due; answers the node steps executed."""
    executed = 0
    for _ in range(rounds):
        done = journey_tasks.advance_runs("test-worker", clock.now(), 500)
        message_tasks.deliver_due("test-worker", clock.now(), 500)
        executed += done
        if not done:
            break
    return executed
