"""The segments domain's jobs: the minute sweep, computes of saved segments, the RFM refresh."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

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


def test_jobs_are_registered_with_their_schedules(database: Database) -> None:
    assert "regulars.segments.tasks" in jobs.discover("regulars.segments")
    tasks = importlib.import_module("regulars.segments.tasks")
    assert jobs.registry.handler("segments.sweep") is tasks.sweep
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
        with session_scope() as session:
            service.create(
                session,
                SegmentCreate(
                    key="top-recency",
                    name="Top recency",
                    rule={"type": "fact", "field": "rfm_recency", "op": "gte", "value": 3},
                ),
            )
            service.compute(session, "top-recency")
        with session_scope(readonly=True) as session:
            assert service.members(session, "top-recency", cursor=None, limit=10).items == []
        with session_scope() as session:
            tasks.refresh_rfm(session, {})
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
