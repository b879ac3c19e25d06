"""The worker on a frozen clock: runs, retries, failures, leases, recurring jobs."""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import event, insert, select, update
from sqlalchemy.orm import Session

from regulars.db import Database, session_scope
from regulars.jobs import service
from regulars.jobs.models import Job, JobStatus
from regulars.jobs.service import Lane, Registry
from regulars.kit.clock import FrozenClock
from regulars.worker import EmbeddedWorker, Worker

from .conftest import START, Boom, recorded
from .worker_tasks import effects, record

LEASE = timedelta(seconds=300)  # the default job_lease_seconds


def _enqueue(kind: str, payload: Mapping[str, object], **options: object) -> int:
    from regulars.db import session_scope

    with session_scope() as session:
        return service.enqueue(session, kind, payload, **options)  # type: ignore[arg-type]


def _job(database: Database, job_id: int) -> Job:
    with database.session(readonly=True) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def _jobs_by_key(database: Database) -> dict[str, Job]:
    with database.session(readonly=True) as session:
        jobs = session.scalars(select(Job).where(Job.idempotency_key.is_not(None)))
        return {job.idempotency_key or "": job for job in jobs}


def test_a_due_job_runs_and_is_done(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    job_id = _enqueue("tests.record", {"n": 1})
    worker = Worker(registry=registry, worker_id="w1")
    assert worker.run_once() == 1
    job = _job(database, job_id)
    assert (job.status, job.attempts, job.locked_by) == (JobStatus.DONE, 1, "w1")
    assert (job.finished_at, job.last_error, job.locked_until) == (START, None, None)
    assert recorded(database) == [(1, "in-process")]
    assert worker.run_once() == 0


def test_a_job_waits_until_it_is_due(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    job_id = _enqueue("tests.record", {"n": 1}, due_at=START + timedelta(hours=1))
    worker = Worker(registry=registry)
    assert worker.run_once() == 0
    assert worker.run_once(START + timedelta(minutes=59)) == 0
    frozen.advance(timedelta(hours=1))
    assert worker.run_once() == 1
    assert _job(database, job_id).status == JobStatus.DONE


def test_a_failing_job_retries_with_backoff_then_fails_keeping_its_error(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    job_id = _enqueue("tests.boom", {"n": 7}, max_attempts=3)
    worker = Worker(registry=registry)
    for attempt, (low, high) in enumerate([(7.5, 15), (15, 30)], start=1):
        assert worker.run_once() == 1
        job = _job(database, job_id)
        assert (job.status, job.attempts, job.locked_by) == (JobStatus.QUEUED, attempt, None)
        assert job.last_error is not None and "Boom: boom 7" in job.last_error
        now = frozen.now()
        assert now + timedelta(seconds=low) <= job.due_at <= now + timedelta(seconds=high)
        assert worker.run_once(job.due_at - timedelta(microseconds=1)) == 0
        frozen.set(job.due_at)
    assert worker.run_once() == 1
    job = _job(database, job_id)
    assert (job.status, job.attempts, job.finished_at) == (JobStatus.FAILED, 3, frozen.now())
    assert job.last_error is not None and "Boom: boom 7" in job.last_error
    assert worker.run_once(frozen.now() + timedelta(days=1)) == 0


def test_one_failing_job_does_not_stop_the_rest_of_its_batch(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    first = _enqueue("tests.record", {"n": 1})
    failing = _enqueue("tests.boom", {"n": 2})
    last = _enqueue("tests.record", {"n": 3})
    assert Worker(registry=registry).run_once() == 3
    assert [_job(database, i).status for i in (first, failing, last)] == [
        JobStatus.DONE,
        JobStatus.QUEUED,
        JobStatus.DONE,
    ]
    assert recorded(database) == [(1, "in-process"), (3, "in-process")]


def test_a_failing_job_leaves_none_of_its_writes(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    job_id = _enqueue("tests.write_then_boom", {"n": 1})
    assert Worker(registry=registry).run_once() == 1
    assert recorded(database) == []
    last_error = _job(database, job_id).last_error
    assert last_error is not None and "after writing" in last_error


def test_a_job_of_unknown_kind_fails_with_a_clear_error(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    job_id = _enqueue("tests.nobody", {}, max_attempts=1)
    assert Worker(registry=registry).run_once() == 1
    job = _job(database, job_id)
    assert job.status == JobStatus.FAILED
    assert job.last_error is not None and "no handler registered" in job.last_error


def test_a_job_claimed_by_a_dead_worker_runs_again_after_its_lease(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    job_id = _enqueue("tests.record", {"n": 1})
    assert Worker(registry=registry, worker_id="dead").claim() == [job_id]
    survivor = Worker(registry=registry, worker_id="alive")
    assert survivor.run_once(START + LEASE) == 0
    frozen.set(START + LEASE + timedelta(seconds=1))
    assert survivor.run_once() == 1
    job = _job(database, job_id)
    assert (job.status, job.attempts, job.locked_by) == (JobStatus.DONE, 2, "alive")
    assert recorded(database) == [(1, "in-process")]


def test_a_worker_that_outlived_its_lease_rolls_back_its_job(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    job_id = _enqueue("tests.record", {"n": 1})
    slow, other = Worker(registry=registry, worker_id="slow"), Worker(registry=registry)
    assert slow.claim() == [job_id]
    frozen.advance(LEASE + timedelta(seconds=1))
    assert other.claim() == [job_id]
    assert slow.run_job(job_id) is None
    assert recorded(database) == []
    assert other.run_job(job_id) == JobStatus.DONE
    assert recorded(database) == [(1, "in-process")]


def test_completion_commits_nothing_once_the_lease_is_lost(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    def _lose_lease(session: Session, payload: Mapping[str, object]) -> None:
        record(session, {"n": 1})
        session.execute(update(Job).values(locked_by="thief"))  # as if taken over meanwhile

    registry.task("tests.lose_lease")(_lose_lease)
    job_id = _enqueue("tests.lose_lease", {})
    assert Worker(registry=registry, worker_id="slow").run_once() == 1
    assert recorded(database) == []
    job = _job(database, job_id)
    assert (job.status, job.locked_by, job.finished_at) == (JobStatus.RUNNING, "slow", None)


def test_a_job_that_kills_its_worker_on_every_attempt_ends_failed(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    job_id = _enqueue("tests.record", {"n": 1}, max_attempts=2)
    for _ in range(2):
        assert Worker(registry=registry).claim() == [job_id]
        frozen.advance(LEASE + timedelta(seconds=1))
    assert Worker(registry=registry).run_once() == 0
    job = _job(database, job_id)
    assert (job.status, job.attempts, job.finished_at) == (JobStatus.FAILED, 2, frozen.now())
    assert job.last_error is not None and "lease expired" in job.last_error


def test_a_stopping_worker_hands_back_jobs_it_has_not_started(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    ids = [_enqueue("tests.record", {"n": n}) for n in range(3)]
    stop = threading.Event()
    stop.set()
    assert Worker(registry=registry).run_once(stop=stop) == 0
    jobs = [_job(database, job_id) for job_id in ids]
    assert [(j.status, j.attempts, j.locked_by) for j in jobs] == [(JobStatus.QUEUED, 0, None)] * 3
    assert Worker(registry=registry).run_once() == 3


def _tick(session: Session, payload: Mapping[str, object]) -> None:
    assert payload == {}


def test_an_interval_job_is_queued_for_its_next_occurrence_and_runs(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    registry.recurring("tests.tick", every=timedelta(minutes=15))(_tick)
    frozen.set(datetime(2026, 3, 2, 10, 7, tzinfo=UTC))
    first, second = Worker(registry=registry), Worker(registry=registry)
    assert first.run_once() == 0
    assert second.run_once() == 0
    key = "recurring:tests.tick:2026-03-02T10:15:00+00:00"
    assert list(_jobs_by_key(database)) == [key]
    frozen.set(datetime(2026, 3, 2, 10, 15, tzinfo=UTC))
    assert first.run_once() == 1
    assert _jobs_by_key(database)[key].status == JobStatus.DONE
    frozen.advance(timedelta(seconds=1))
    assert second.run_once() == 0
    queued = {k: j.due_at for k, j in _jobs_by_key(database).items() if j.status == "queued"}
    assert queued == {
        "recurring:tests.tick:2026-03-02T10:30:00+00:00": datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
    }


def _steps_writing(
    database: Database, seen_outside: list[bool], fail_after: int | None = None
) -> Callable[[Mapping[str, object]], None]:
    """A job in steps: three transactions of its own, each one effect row. Before each it
    looks from another thread whether another writer can commit (SQLite's one write lock),
    which it cannot while the job's own transaction is open."""

    def steps(payload: Mapping[str, object]) -> None:
        from regulars.db import session_scope

        assert payload == {}
        for n in range(3):
            seen_outside.append(_another_writer_commits(database))
            if fail_after is not None and n == fail_after:
                raise Boom("in the middle")
            with session_scope() as session:
                session.execute(insert(effects).values(n=n, worker="steps"))

    return steps


def _another_writer_commits(database: Database) -> bool:
    done = threading.Event()

    def write() -> None:
        with database.session() as session:
            session.execute(insert(effects).values(n=99, worker="other"))
        done.set()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return done.wait(timeout=5)


def test_a_job_in_steps_commits_each_step_outside_the_jobs_transaction(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    seen_outside: list[bool] = []
    steps = _steps_writing(database, seen_outside)
    registry.recurring_in_steps("tests.steps", every=timedelta(minutes=15))(steps)
    worker = Worker(registry=registry)
    frozen.set(datetime(2026, 3, 2, 9, 7, tzinfo=UTC))
    assert worker.run_once() == 0  # queues the next occurrence
    frozen.set(datetime(2026, 3, 2, 9, 15, tzinfo=UTC))

    assert worker.run_once() == 1

    assert seen_outside == [True, True, True]
    assert [n for n, who in recorded(database) if who == "steps"] == [0, 1, 2]
    key = "recurring:tests.steps:2026-03-02T09:15:00+00:00"
    assert _jobs_by_key(database)[key].status == JobStatus.DONE
    assert registry.steps_handler("tests.steps") is steps
    with pytest.raises(service.UnknownTask, match="commits in steps"):
        registry.handler("tests.steps")(None, {})  # type: ignore[arg-type]


def test_a_job_in_steps_that_fails_keeps_its_committed_steps_and_is_retried(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    seen_outside: list[bool] = []
    registry.recurring_in_steps("tests.steps", every=timedelta(minutes=15))(
        _steps_writing(database, seen_outside, fail_after=1)
    )
    worker = Worker(registry=registry)
    frozen.set(datetime(2026, 3, 2, 9, 7, tzinfo=UTC))
    assert worker.run_once() == 0
    frozen.set(datetime(2026, 3, 2, 9, 15, tzinfo=UTC))

    assert worker.run_once() == 1

    job = _jobs_by_key(database)["recurring:tests.steps:2026-03-02T09:15:00+00:00"]
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 1)
    assert job.last_error is not None and "in the middle" in job.last_error
    assert [n for n, who in recorded(database) if who == "steps"] == [0]


def test_a_daily_job_keeps_its_local_time_across_a_dst_change(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    registry.recurring("tests.daily", daily_at=time(9, 0), timezone="Europe/Paris")(_tick)
    worker = Worker(registry=registry)
    frozen.set(datetime(2026, 3, 27, 12, 0, tzinfo=UTC))
    ran_at = []
    for _ in range(3 * 24 * 4):  # three days, a batch every quarter of an hour
        if worker.run_once() == 1:
            ran_at.append(frozen.now())
        frozen.advance(timedelta(minutes=15))
    # 09:00 in Paris: 08:00 UTC on CET days, 07:00 UTC from Sunday 29 March (CEST).
    assert ran_at == [
        datetime(2026, 3, 28, 8, 0, tzinfo=UTC),
        datetime(2026, 3, 29, 7, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 7, 0, tzinfo=UTC),
    ]


def test_the_prune_task_runs_through_the_worker(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    importlib.import_module("regulars.jobs.tasks")
    old = _enqueue("tests.record", {"n": 1})
    Worker(registry=registry).run_once()
    frozen.advance(timedelta(days=8))
    recent = _enqueue("tests.record", {"n": 2})
    Worker(registry=registry).run_once()
    prune = _enqueue("jobs.prune", {})
    # The process-wide registry: other domains' recurring jobs may run in the same round.
    assert Worker().run_once() >= 1
    with database.session(readonly=True) as session:
        left = set(session.scalars(select(Job.id).where(Job.kind != "jobs.prune")))
    assert old not in left
    assert recent in left
    assert _job(database, prune).status == JobStatus.DONE


def test_the_embedded_worker_runs_jobs_in_a_thread_and_stops(
    database: Database, registry: Registry
) -> None:
    ran = threading.Event()

    def _signal(session: Session, payload: Mapping[str, object]) -> None:
        ran.set()

    registry.task("tests.signal")(_signal)
    job_id = _enqueue("tests.signal", {})
    embedded = EmbeddedWorker(Worker(registry=registry))
    embedded.start()
    try:
        assert embedded.is_running
        assert ran.wait(timeout=30)
    finally:
        embedded.stop()
    assert not embedded.is_running
    assert _job(database, job_id).status == JobStatus.DONE


def test_a_long_job_does_not_hold_up_the_domain_queues(
    database: Database, registry: Registry
) -> None:
    """Queues (journey steps, deliveries) run in a lane of their own: the job below waits
    for the queue to be drained, which a worker running both in one loop never does."""
    queued_item = threading.Event()
    drained_while_the_job_ran: list[bool] = []
    drained = threading.Event()

    def _drain(worker_id: str, now: datetime, limit: int) -> int:
        if not queued_item.is_set() or drained.is_set():
            return 0
        drained.set()
        return 1

    def _long(session: Session, payload: Mapping[str, object]) -> None:
        queued_item.set()
        service.wake()
        drained_while_the_job_ran.append(drained.wait(timeout=30))  # a bound, not a pause

    registry.queue("tests.items")(_drain)
    registry.task("tests.long")(_long)
    job_id = _enqueue("tests.long", {})
    embedded = EmbeddedWorker(Worker(registry=registry))
    embedded.start()
    try:
        assert drained.wait(timeout=60)
    finally:
        embedded.stop(timeout=60)
    assert drained_while_the_job_ran == [True]
    assert _job(database, job_id).status == JobStatus.DONE


if os.environ.get("REGULARS_TEST_DATABASE_URL"):  # exists only where PostgreSQL does
    # On SQLite a running job's transaction holds the write lock that every claim needs.
    @pytest.mark.parametrize("backend", ["postgresql"])
    def test_a_job_running_past_its_lease_is_not_claimed_while_its_worker_lives(
        database: Database, registry: Registry, frozen: FrozenClock
    ) -> None:
        claimed_meanwhile: list[list[int]] = []

        def _long(session: Session, payload: Mapping[str, object]) -> None:
            frozen.advance(LEASE * 3)  # the job runs three leases long
            claimed_meanwhile.append(Worker(registry=registry, worker_id="other").claim())
            record(session, {"n": 1})

        registry.task("tests.long")(_long)
        job_id = _enqueue("tests.long", {})
        assert Worker(registry=registry, worker_id="busy").run_once() == 1
        assert claimed_meanwhile == [[]]
        job = _job(database, job_id)
        assert (job.status, job.locked_by, job.attempts) == (JobStatus.DONE, "busy", 1)
        assert recorded(database) == [(1, "in-process")]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_round_with_nothing_due_takes_no_write_lock(
    database: Database, frozen: FrozenClock
) -> None:
    """Jobs, journey runs and deliveries are looked for with a read first: SQLite's one
    writer is what every request waits for, and most rounds find nothing."""
    service.discover()  # the product's queues: journey runs, deliveries
    assert {"journeys.runs", "messages.deliveries"} <= {q.name for q in service.registry.queues}
    worker = Worker(worker_id="w1")
    worker.run_once()  # queues the next occurrence of each recurring job
    write_transactions: list[object] = []

    def count(connection: object) -> None:
        write_transactions.append(connection)

    event.listen(database.writer, "begin", count)
    try:
        assert worker.run_once() == 0
        assert write_transactions == []

        job_id = _enqueue("segments.sweep", {})  # now something is due
        write_transactions.clear()
        assert worker.run_once() == 1
        assert write_transactions != []
        assert _job(database, job_id).status == JobStatus.DONE
    finally:
        event.remove(database.writer, "begin", count)


def test_a_queue_is_drained_only_when_its_look_finds_work(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    due: list[bool] = [False]
    drained: list[datetime] = []

    def _has_work(session: Session, *, now: datetime) -> bool:
        return due[0]

    def _drain(worker_id: str, now: datetime, limit: int) -> int:
        drained.append(now)
        return 1

    registry.queue("tests.looked_at", has_work=_has_work)(_drain)
    worker = Worker(registry=registry, worker_id="w1")
    assert worker.drain_queues() == 0
    assert drained == []
    due[0] = True
    assert worker.drain_queues() == 1
    assert drained == [START]


def _tell_then_fail(queue: str) -> None:
    with session_scope() as session:
        service.wake_after_commit(session, queue=queue)
        raise RuntimeError("rolled back: nothing was queued")


def test_work_committed_in_this_process_is_drained_without_a_look_once(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    looks: list[datetime] = []
    drained: list[datetime] = []

    def _has_work(session: Session, *, now: datetime) -> bool:
        looks.append(now)
        return False

    def _drain(worker_id: str, now: datetime, limit: int) -> int:
        drained.append(now)
        return 1

    registry.queue("tests.told", has_work=_has_work)(_drain)
    worker = Worker(registry=registry, worker_id="w1")
    with pytest.raises(RuntimeError):
        _tell_then_fail("tests.told")
    assert (worker.drain_queues(), len(looks)) == (0, 1)  # a rollback tells nothing
    with session_scope() as session:
        service.wake_after_commit(session, queue="tests.told")
    assert (worker.drain_queues(), len(looks)) == (1, 1)  # drained, not looked at
    assert drained == [START]
    assert (worker.drain_queues(), len(looks)) == (0, 2)  # told once: it looks again


def test_work_one_queue_makes_for_the_next_is_drained_in_the_same_round(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    """As a journey step queues a delivery: the deliveries queue is asked after the journey
    drain, not before it."""
    handed_over: list[str] = []
    delivered: list[str] = []

    def _step(worker_id: str, now: datetime, limit: int) -> int:
        handed_over.append("delivery")
        return 1

    def _has_delivery(session: Session, *, now: datetime) -> bool:
        return len(handed_over) > len(delivered)

    def _deliver(worker_id: str, now: datetime, limit: int) -> int:
        delivered.append(handed_over[-1])
        return 1

    registry.queue("tests.a_steps")(_step)
    registry.queue("tests.b_deliveries", has_work=_has_delivery)(_deliver)
    assert Worker(registry=registry, worker_id="w1").drain_queues() == 2
    assert delivered == ["delivery"]


def test_work_handed_over_is_taken_by_a_later_queue_of_the_same_workers_round(
    database: Database, registry: Registry, frozen: FrozenClock
) -> None:
    """As a journey step hands the deliveries it claimed to the deliveries drain: only to
    a queue the round drains later, only for the worker whose round it is."""
    asked: list[tuple[str, bool]] = []
    taken: list[object] = []

    def _steps(worker_id: str, now: datetime, limit: int) -> int:
        for queue in ("tests.a_earlier", "tests.c_deliveries"):
            asked.append((queue, service.drained_later(queue, worker_id)))
        asked.append(("other worker", service.drained_later("tests.c_deliveries", "w2")))
        service.hand_over("tests.c_deliveries", worker_id, "claimed")
        return 1

    def _earlier(worker_id: str, now: datetime, limit: int) -> int:
        return 0

    def _nothing_due(session: Session, *, now: datetime) -> bool:
        return False

    def _deliveries(worker_id: str, now: datetime, limit: int) -> int:
        taken.extend(service.take_handed("tests.c_deliveries", worker_id))
        return len(taken)

    registry.queue("tests.a_earlier", has_work=_nothing_due)(_earlier)
    registry.queue("tests.b_steps")(_steps)
    registry.queue("tests.c_deliveries", has_work=_nothing_due)(_deliveries)

    assert Worker(registry=registry, worker_id="w1").drain_queues() == 2
    assert asked == [
        ("tests.a_earlier", False),
        ("tests.c_deliveries", True),
        ("other worker", False),
    ]
    assert taken == ["claimed"]  # drained though its look finds nothing: it was handed work
    assert service.take_handed("tests.c_deliveries", "w1") == []
    assert not service.drained_later("tests.c_deliveries", "w1")  # outside a round


def _queue_a_job_then_fail() -> None:
    with session_scope() as session:
        service.wake_after_commit(session, Lane.JOBS)
        raise RuntimeError("rolled back: nothing was queued")


def test_committed_work_rings_the_bells_of_its_own_lane_only(database: Database) -> None:
    jobs_bell, queues_bell = service.new_bell(Lane.JOBS), service.new_bell(Lane.QUEUES)
    with session_scope() as session:
        service.wake_after_commit(session)  # a journey step or a delivery was queued
    assert (queues_bell.is_set(), jobs_bell.is_set()) == (True, False)

    queues_bell.clear()
    with session_scope() as session:
        service.wake_after_commit(session, Lane.JOBS)  # a job to run now (a broadcast)
    assert (queues_bell.is_set(), jobs_bell.is_set()) == (False, True)

    jobs_bell.clear()
    with pytest.raises(RuntimeError):
        _queue_a_job_then_fail()
    assert (queues_bell.is_set(), jobs_bell.is_set()) == (False, False)

    service.wake()  # stopping: every lane
    assert (queues_bell.is_set(), jobs_bell.is_set()) == (True, True)
