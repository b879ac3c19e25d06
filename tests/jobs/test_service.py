"""Enqueueing, idempotency, the handler registry, schedules and backoff."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfoNotFoundError

import pytest
from sqlalchemy import select

from regulars.db import Database
from regulars.errors import ValidationFailed
from regulars.jobs import service
from regulars.jobs.models import Job, JobStatus
from regulars.kit.clock import FrozenClock

from .conftest import START


def _jobs(database: Database) -> list[Job]:
    with database.session(readonly=True) as session:
        return list(session.scalars(select(Job).order_by(Job.id)))


def test_enqueue_queues_a_job_due_now(database: Database, frozen: FrozenClock) -> None:
    with database.session() as session:
        job_id = service.enqueue(session, "tests.record", {"n": 1})
    [job] = _jobs(database)
    assert job.id == job_id
    assert (job.kind, job.payload, job.status) == ("tests.record", {"n": 1}, JobStatus.QUEUED)
    assert job.due_at == START
    assert job.created_at == START
    assert (job.attempts, job.max_attempts) == (0, 10)
    assert job.idempotency_key is None


def test_enqueue_keeps_due_at_and_max_attempts(database: Database, frozen: FrozenClock) -> None:
    due = START + timedelta(days=3)
    with database.session() as session:
        service.enqueue(session, "tests.record", {"n": 1}, due_at=due, max_attempts=2)
    [job] = _jobs(database)
    assert (job.due_at, job.max_attempts) == (due, 2)


def test_same_idempotency_key_returns_the_existing_job(
    database: Database, frozen: FrozenClock
) -> None:
    with database.session() as session:
        first = service.enqueue(session, "tests.record", {"n": 1}, idempotency_key="k1")
        again_same_transaction = service.enqueue(
            session, "tests.record", {"n": 2}, idempotency_key="k1"
        )
    with database.session() as session:
        again_later = service.enqueue(session, "tests.record", {"n": 3}, idempotency_key="k1")
        other = service.enqueue(session, "tests.record", {"n": 4}, idempotency_key="k2")
    assert first == again_same_transaction == again_later
    assert other != first
    assert [(job.idempotency_key, job.payload) for job in _jobs(database)] == [
        ("k1", {"n": 1}),
        ("k2", {"n": 4}),
    ]


def test_jobs_without_key_are_never_merged(database: Database, frozen: FrozenClock) -> None:
    with database.session() as session:
        ids = {service.enqueue(session, "tests.record", {"n": 1}) for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize("kind", ["record", "Tests.record", "tests.", "tests record"])
def test_enqueue_rejects_a_kind_not_named_domain_verb(database: Database, kind: str) -> None:
    with database.session() as session, pytest.raises(ValidationFailed):
        service.enqueue(session, kind, {})


def test_prune_deletes_finished_jobs_older_than_seven_days(
    database: Database, frozen: FrozenClock
) -> None:
    with database.session() as session:
        for status, finished_days_ago in [
            (JobStatus.DONE, 8),
            (JobStatus.FAILED, 8),
            (JobStatus.DONE, 6),
            (JobStatus.QUEUED, None),
        ]:
            job_id = service.enqueue(session, "tests.record", {"status": str(status)})
            job = session.get_one(Job, job_id)
            job.status = status
            if finished_days_ago is not None:
                job.finished_at = START - timedelta(days=finished_days_ago)
    with database.session() as session:
        deleted = service.prune(session, now=START)
    assert deleted == 2
    assert [(j.status, j.payload) for j in _jobs(database)] == [
        (JobStatus.DONE, {"status": "done"}),
        (JobStatus.QUEUED, {"status": "queued"}),
    ]


def test_interval_schedule_is_aligned_on_the_interval() -> None:
    schedule = service.Schedule("tests.tick", every=timedelta(minutes=15))
    assert schedule.next_at(datetime(2026, 3, 2, 10, 7, tzinfo=UTC)) == datetime(
        2026, 3, 2, 10, 15, tzinfo=UTC
    )
    on_the_dot = datetime(2026, 3, 2, 10, 15, tzinfo=UTC)
    assert schedule.next_at(on_the_dot) == on_the_dot
    assert schedule.next_at(on_the_dot + timedelta(microseconds=1)) == datetime(
        2026, 3, 2, 10, 30, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("zone", "now", "expected"),
    [
        # Paris at 09:00: 08:00 UTC in winter (CET), 07:00 UTC from 29 March 2026 (CEST).
        ("Europe/Paris", "2026-03-28T07:00", "2026-03-28T08:00"),
        ("Europe/Paris", "2026-03-28T08:01", "2026-03-29T07:00"),
        ("Europe/Paris", "2026-10-24T07:01", "2026-10-25T08:00"),
        # New York at 09:00: 14:00 UTC (EST), 13:00 UTC from 8 March 2026 (EDT).
        ("America/New_York", "2026-03-07T14:01", "2026-03-08T13:00"),
        ("UTC", "2026-03-07T09:01", "2026-03-08T09:00"),
    ],
)
def test_daily_schedule_keeps_local_time_across_dst(zone: str, now: str, expected: str) -> None:
    schedule = service.Schedule("tests.daily", daily_at=time(9, 0), timezone=zone)
    at = datetime.fromisoformat(now).replace(tzinfo=UTC)
    assert schedule.next_at(at) == datetime.fromisoformat(expected).replace(tzinfo=UTC)


def test_daily_time_skipped_by_dst_runs_once_that_day_after_the_gap() -> None:
    # 02:30 does not exist in Paris on 29 March 2026; it runs at 03:30 CEST (01:30 UTC).
    schedule = service.Schedule("tests.daily", daily_at=time(2, 30), timezone="Europe/Paris")
    at = datetime(2026, 3, 28, 1, 31, tzinfo=UTC)
    assert schedule.next_at(at) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert schedule.next_at(datetime(2026, 3, 29, 1, 31, tzinfo=UTC)) == datetime(
        2026, 3, 30, 0, 30, tzinfo=UTC
    )


def test_recurring_key_names_kind_and_due_time() -> None:
    schedule = service.Schedule("tests.tick", every=timedelta(hours=1))
    key = schedule.idempotency_key(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
    assert key == "recurring:tests.tick:2026-03-02T10:00:00+00:00"


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"every": timedelta(hours=1), "daily_at": time(3, 0)},
        {"every": timedelta(0)},
        {"daily_at": time(3, 0, tzinfo=UTC)},
    ],
)
def test_recurring_needs_one_valid_schedule(options: dict[str, object]) -> None:
    with pytest.raises(ValidationFailed):
        service.Registry().recurring("tests.tick", **options)  # type: ignore[arg-type]


def test_recurring_rejects_an_unknown_time_zone() -> None:
    with pytest.raises(ZoneInfoNotFoundError):
        service.Registry().recurring("tests.tick", daily_at=time(3, 0), timezone="Mars/Olympus")


def test_a_kind_has_one_handler() -> None:
    registry = service.Registry()

    @registry.task("tests.once")
    def first(session: object, payload: object) -> None: ...

    registry.task("tests.once")(first)  # the same function again (a re-import) is fine
    with pytest.raises(ValidationFailed, match="already handled"):

        @registry.task("tests.once")
        def second(session: object, payload: object) -> None: ...

    assert registry.handler("tests.once") is first
    with pytest.raises(service.UnknownTask):
        registry.handler("tests.nobody")


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(1, 7.5, 15), (2, 15, 30), (3, 30, 60), (8, 960, 1920), (9, 1800, 3600), (50, 1800, 3600)],
)
def test_backoff_doubles_with_jitter_up_to_an_hour(attempt: int, low: float, high: float) -> None:
    assert service.backoff(attempt, rng=lambda: 0.0) == timedelta(seconds=low)
    assert service.backoff(attempt, rng=lambda: 0.999999) < timedelta(seconds=high)
    assert service.backoff(attempt, rng=lambda: 0.999999) > timedelta(seconds=high * 0.999)


def test_discover_imports_the_tasks_modules() -> None:
    found = service.discover("regulars.jobs")
    assert found == ["regulars.jobs.tasks"]
    assert "jobs.prune" in service.registry.kinds
    prune = importlib.import_module("regulars.jobs.tasks").prune
    assert service.registry.handler("jobs.prune") is prune
    [schedule] = [s for s in service.registry.schedules if s.kind == "jobs.prune"]
    assert (schedule.daily_at, schedule.timezone) == (time(3, 0), "UTC")
