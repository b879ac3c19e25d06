"""The segments domain's jobs: the minute sweep, computes of saved segments, the RFM refresh."""

from __future__ import annotations

import importlib
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from regulars.customers.models import CustomerFacts
from regulars.db import Database, session_scope
from regulars.jobs import service as jobs
from regulars.kit import clock
from regulars.segments import service
from regulars.segments.schemas import SegmentCreate
from tests.customers.helpers import ingest, owner_of

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def order(user: str, *, days_ago: int, n: int) -> None:
    result = ingest(
        [
            {
                "type": "track",
                "userId": user,
                "event": "Order Completed",
                "properties": {"revenue": 10},
                "messageId": f"{user}-{n}",
                "timestamp": (T0 - timedelta(days=days_ago)).isoformat(),
            }
        ]
    )
    assert result.accepted == 1


def recency_segment(key: str, *, at_least: int) -> None:
    """A computed segment of the customers whose RFM recency score is at least `at_least`."""
    rule = {"type": "fact", "field": "rfm_recency", "op": "gte", "value": at_least}
    with session_scope() as session:
        service.create(session, SegmentCreate(key=key, name=key, rule=rule))
        service.compute(session, key)


def test_jobs_are_registered_with_their_schedules(database: Database) -> None:
    assert "regulars.segments.tasks" in jobs.discover("regulars.segments")
    tasks = importlib.import_module("regulars.segments.tasks")
    assert jobs.registry.steps_handler("segments.sweep") is tasks.sweep
    assert jobs.registry.handler("segments.compute") is tasks.compute
    every = {s.kind: s.every for s in jobs.registry.schedules}
    assert every["segments.sweep"] == timedelta(minutes=1)
    assert every["segments.refresh_rfm"] == timedelta(minutes=60)


def test_refresh_rfm_scores_then_recomputes_the_segments_reading_them(
    database: Database,
) -> None:
    tasks = importlib.import_module("regulars.segments.tasks")
    with clock.frozen(T0):
        order("recent", days_ago=1, n=1)
        order("old", days_ago=300, n=1)
        order("old", days_ago=200, n=2)
        recency_segment("top-recency", at_least=3)
        with session_scope(readonly=True) as session:
            assert service.members(session, "top-recency", cursor=None, limit=10).items == []
        tasks.refresh_rfm({})  # it opens its own transactions
    recent = owner_of("recent")
    with session_scope(readonly=True) as session:
        rows = session.execute(select(CustomerFacts.customer_id, CustomerFacts.rfm_recency))
        scored: dict[str | None, int | None] = {str(c): r for c, r in rows}
        page = service.members(session, "top-recency", cursor=None, limit=10)
    # Two scored customers: the more recent one has one customer below it -> 1 + 5 * 1 // 2.
    assert scored[recent] == 3
    assert [m.customer_id for m in page.items] == [recent]


def test_the_compute_job_fills_a_new_segment_and_skips_a_deleted_one(database: Database) -> None:
    tasks = importlib.import_module("regulars.segments.tasks")
    with clock.frozen(T0):
        order("ada", days_ago=1, n=1)
        with session_scope() as session:
            service.create(
                session,
                SegmentCreate(key="b", name="B", rule={"type": "event", "name": "Order Completed"}),
            )
            tasks.compute(session, {"segment": "b"})
            assert service.find(session, "b") is not None
            assert service.segment_read(session, service.require(session, "b")).members_count == 1
            service.delete(session, "b")
            tasks.compute(session, {"segment": "b"})  # gone since it was queued: nothing to do


def test_the_rfm_refresh_writes_a_chunk_per_transaction_and_ingestion_goes_on_between(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = importlib.import_module("regulars.segments.tasks")
    monkeypatch.setattr(tasks, "RFM_CHUNK", 2)
    written: list[list[str]] = []
    real_write = tasks.customers.write_rfm_scores

    def write(session: Session, scores: list[tuple[str, int, int, int]]) -> None:
        written.append([customer_id for customer_id, *_ in scores])
        real_write(session, scores)

    def ingest_meanwhile(session: Session) -> list[str]:
        # Between the scores and the computes: another writer's order commits at once.
        done = threading.Event()

        def late_order() -> None:
            order("late", days_ago=0, n=1)
            done.set()

        threading.Thread(target=late_order, daemon=True).start()
        assert done.wait(timeout=10), "an order waited for the RFM refresh to end"
        return real_readers(session)

    real_readers = service.rfm_readers
    monkeypatch.setattr(tasks.customers, "write_rfm_scores", write)
    monkeypatch.setattr(tasks.service, "rfm_readers", ingest_meanwhile)
    with clock.frozen(T0):
        for n, user in enumerate(["a", "b", "c", "d", "e"]):
            order(user, days_ago=10 * (n + 1), n=n)
        recency_segment("champions-ish", at_least=4)

        tasks.refresh_rfm({})

    ids = {user: str(owner_of(user)) for user in ["a", "b", "c", "d", "e"]}
    assert [len(chunk) for chunk in written] == [2, 2, 1]
    assert sorted(c for chunk in written for c in chunk) == sorted(ids.values())
    with session_scope(readonly=True) as session:
        rows = session.execute(select(CustomerFacts.customer_id, CustomerFacts.rfm_recency))
        recency = {str(c): r for c, r in rows}
        page = service.members(session, "champions-ish", cursor=None, limit=10)
    # Five scored customers, a the most recent: 1 + 5 * (customers below) // 5.
    assert [recency[ids[u]] for u in ["a", "b", "c", "d", "e"]] == [5, 4, 3, 2, 1]
    assert recency[str(owner_of("late"))] is None  # ordered after the scores were read
    assert sorted(m.customer_id for m in page.items) == sorted([ids["a"], ids["b"]])
