"""Every query on the `jobs` table. PostgreSQL claims with FOR UPDATE SKIP LOCKED; SQLite's
BEGIN IMMEDIATE already serialises writers, so its portable path is the same query unlocked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, Select, and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from regulars.db import UTCDateTime, finds_any, is_postgres
from regulars.jobs.models import Job, JobStatus


def _rowcount(result: object) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount


def add(
    session: Session,
    *,
    kind: str,
    payload: Mapping[str, object],
    due_at: datetime,
    max_attempts: int,
    created_at: datetime,
    idempotency_key: str | None = None,
) -> int | None:
    """Insert a queued job; with a key already taken, insert nothing and return None."""
    values = {
        "kind": kind,
        "payload": dict(payload),
        "status": JobStatus.QUEUED,
        "due_at": due_at,
        "attempts": 0,
        "max_attempts": max_attempts,
        "idempotency_key": idempotency_key,
        "created_at": created_at,
    }
    if idempotency_key is None:
        return session.execute(insert(Job).values(values).returning(Job.id)).scalar_one()
    dialect_insert = postgresql.insert if is_postgres(session) else sqlite.insert
    statement = (
        dialect_insert(Job)
        .values(values)
        .on_conflict_do_nothing(index_elements=[Job.idempotency_key])
        .returning(Job.id)
    )
    return session.execute(statement).scalar_one_or_none()


def get(session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id)


def get_id_by_idempotency_key(session: Session, key: str) -> int | None:
    return session.scalar(select(Job.id).where(Job.idempotency_key == key))


def get_claimed(session: Session, job_id: int, *, worker_id: str) -> Job | None:
    """The job if it is still running under this worker's lease, else None (lease lost).

    On PostgreSQL the row stays locked until the job's transaction ends, so a job that runs
    past its lease is skipped by other workers' claims (SKIP LOCKED) for as long as its worker
    lives; a dead worker's lock goes with its connection. On SQLite the job's transaction
    holds the write lock, which every claim needs, so the same holds there."""
    statement = select(Job).where(
        Job.id == job_id, Job.status == JobStatus.RUNNING, Job.locked_by == worker_id
    )
    if is_postgres(session):
        statement = statement.with_for_update()
    return session.scalars(statement).one_or_none()


def any_due(session: Session, *, now: datetime) -> bool:
    """Is there a job to claim, or one abandoned to fail? A read, so a worker with nothing
    to do takes no write lock (SQLite's one writer is what every request waits for)."""
    return finds_any(session, ("jobs.any_due",), _any_due_query, {"now": now})


def _any_due_query() -> Select[Any]:
    now = bindparam("now", type_=UTCDateTime())
    return select(Job.id).where(or_(_queued_due(now), _lease_expired(now))).limit(1)


def _queued_due(now: Any) -> ColumnElement[bool]:
    return and_(Job.status == JobStatus.QUEUED, Job.due_at <= now)


def _lease_expired(now: Any) -> ColumnElement[bool]:
    """Running, but its worker's lease ran out: the worker died (or outlived its lease)."""
    return and_(Job.status == JobStatus.RUNNING, Job.locked_until < now)


def claim_due(
    session: Session, *, now: datetime, limit: int, worker_id: str, locked_until: datetime
) -> list[int]:
    """Mark up to `limit` due jobs running under this worker; a running job whose lease has
    expired (its worker died) is due again. Each claim counts as an attempt."""
    claimable = or_(_queued_due(now), and_(_lease_expired(now), Job.attempts < Job.max_attempts))
    query = select(Job.id).where(claimable).order_by(Job.due_at, Job.id).limit(limit)
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    ids = list(session.scalars(query))
    if ids:
        session.execute(
            update(Job)
            .where(Job.id.in_(ids))
            .values(
                status=JobStatus.RUNNING,
                locked_by=worker_id,
                locked_until=locked_until,
                attempts=Job.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        )
    return ids


def fail_abandoned(session: Session, *, now: datetime) -> int:
    """Fail running jobs whose lease expired on their last attempt (they kept killing workers)."""
    result = session.execute(
        update(Job)
        .where(_lease_expired(now), Job.attempts >= Job.max_attempts)
        .values(
            status=JobStatus.FAILED,
            last_error="lease expired: the worker running the last attempt stopped",
            locked_until=None,
            finished_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


def _update_claimed(session: Session, job_id: int, *, worker_id: str, **values: object) -> bool:
    """Update a job only while this worker still holds it: the fence against a lost lease."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING, Job.locked_by == worker_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


def mark_done(session: Session, job_id: int, *, worker_id: str, now: datetime) -> bool:
    return _update_claimed(
        session,
        job_id,
        worker_id=worker_id,
        status=JobStatus.DONE,
        locked_until=None,
        finished_at=now,
    )


def mark_retry(
    session: Session, job_id: int, *, worker_id: str, error: str, due_at: datetime
) -> bool:
    return _update_claimed(
        session,
        job_id,
        worker_id=worker_id,
        status=JobStatus.QUEUED,
        last_error=error,
        due_at=due_at,
        locked_by=None,
        locked_until=None,
    )


def mark_failed(
    session: Session, job_id: int, *, worker_id: str, error: str, now: datetime
) -> bool:
    return _update_claimed(
        session,
        job_id,
        worker_id=worker_id,
        status=JobStatus.FAILED,
        last_error=error,
        locked_until=None,
        finished_at=now,
    )


def release(session: Session, job_ids: Sequence[int], *, worker_id: str) -> int:
    """Hand claimed jobs that never started back to the queue (graceful shutdown)."""
    if not job_ids:
        return 0
    result = session.execute(
        update(Job)
        .where(
            Job.id.in_(job_ids),
            Job.status == JobStatus.RUNNING,
            Job.locked_by == worker_id,
        )
        .values(
            status=JobStatus.QUEUED,
            attempts=Job.attempts - 1,
            locked_by=None,
            locked_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


def delete_finished_before(session: Session, *, before: datetime) -> int:
    result = session.execute(
        delete(Job)
        .where(
            Job.status.in_([JobStatus.DONE, JobStatus.FAILED]),
            Job.finished_at < before,
        )
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)
