"""The loop that claims due jobs and runs them: `regulars worker`, or a thread of `regulars serve`.

One batch: enqueue the next occurrence of each recurring job, claim due jobs in one short
transaction, then run each job in its own transaction, where the handler's writes and the
job's completion commit together (a job registered to commit in steps opens its own
transactions, and is completed in one more). A failing job is rolled back and its failure
recorded in a fresh transaction; the rest of the batch goes on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.db import session_scope
from regulars.jobs import service
from regulars.jobs.models import JobStatus
from regulars.jobs.service import Lane
from regulars.kit import clock

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another worker took the job over (this one outlived its lease); roll back."""


def new_worker_id(index: int = 0) -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{index}"


class Worker:
    def __init__(
        self,
        *,
        registry: service.Registry | None = None,
        worker_id: str | None = None,
        batch_size: int | None = None,
    ) -> None:
        settings = get_settings()
        self.registry = registry if registry is not None else service.registry
        self.worker_id = worker_id or new_worker_id()
        self.batch_size = batch_size or settings.worker_batch_size
        self.poll_seconds = settings.worker_poll_seconds
        self.lease = timedelta(seconds=settings.job_lease_seconds)
        self._scheduled: dict[str, datetime] = {}

    def run_once(self, now: datetime | None = None, *, stop: threading.Event | None = None) -> int:
        """One round of both lanes, one after the other: a batch of jobs, then a batch from
        each domain queue; answer how much ran. `now` overrides the clock."""
        return self.run_jobs(now, stop=stop) + self.drain_queues(now)

    def run_jobs(self, now: datetime | None = None, *, stop: threading.Event | None = None) -> int:
        """Claim one batch of jobs and run it; return how many ran."""
        self.ensure_recurring(now)
        job_ids = self.claim(now)
        for ran, job_id in enumerate(job_ids):
            if stop is not None and stop.is_set():
                self.release(job_ids[ran:])
                return ran
            self.run_job(job_id, now)
        return len(job_ids)

    def drain_queues(self, now: datetime | None = None) -> int:
        """One batch from each domain queue that has work (deliveries, journey runs); a
        failing queue is logged and the others still run."""
        at, handled = _now(now), 0
        queues = self.registry.queues
        for index, queue in enumerate(queues):
            later = [q.name for q in queues[index + 1 :]]
            try:
                with service.draining(self.worker_id, later=later):
                    if self._has_work(queue, at):
                        handled += queue.drain(self.worker_id, at, self.batch_size)
            except Exception:  # one broken queue must not stop jobs or the other queues
                log.exception("queue %s failed", queue.name)
        return handled

    def _has_work(self, queue: service.Queue, now: datetime) -> bool:
        """Asked in a read just before the drain, unless an earlier drain of this round
        handed it work or a commit of this process told of some: most rounds find nothing
        in most queues, and a drain's claim is a write transaction, on SQLite a wait for
        the one writer."""
        if queue.has_work is None or service.has_handed(queue.name, self.worker_id):
            return True  # work handed over by an earlier drain of this round
        if service.take_queued(queue.name):
            return True  # work committed in this process a moment ago: no need to look
        with session_scope(readonly=True) as session:
            return queue.has_work(session, now=now)

    def run_forever(self, stop: threading.Event) -> None:
        """Run until `stop` is set, in two lanes: the domain queues (journey steps,
        deliveries: what a customer is waiting for) in a thread of their own, the jobs here.
        One lane made every transactional message wait for the jobs of the round (at
        start-up, the first runs of the recurring jobs: up to a second at 100,000 customers;
        every hour, the RFM refresh). Each lane repeats while it finds work, and otherwise
        waits up to `worker_poll_seconds` or until work of its lane is committed in this
        process (`jobs.wake_after_commit`): a run enrolled or a delivery queued wakes the
        queues lane only, so the jobs lane does not look for jobs after every tracked event."""
        log.info("worker %s started", self.worker_id)
        queues_bell, jobs_bell = service.new_bell(Lane.QUEUES), service.new_bell(Lane.JOBS)
        queues = threading.Thread(
            target=self._lane,
            args=(stop, self.drain_queues, queues_bell),
            name=f"{threading.current_thread().name}:queues",
            daemon=True,
        )
        queues.start()
        try:
            self._lane(stop, lambda: self.run_jobs(stop=stop), jobs_bell)
        finally:
            queues.join()
        log.info("worker %s stopped", self.worker_id)

    def _lane(
        self, stop: threading.Event, round_: Callable[[], int], bell: threading.Event
    ) -> None:
        """Run rounds until `stop`; after a round that found nothing, wait for the poll or
        the lane's bell."""
        while not stop.is_set():
            try:
                ran = round_()
            except SQLAlchemyError:  # the database went away: log, wait, try again
                log.exception("worker %s: database error", self.worker_id)
                ran = 0
            if ran == 0:
                service.wait_for_work(bell, self.poll_seconds)

    def ensure_recurring(self, now: datetime | None = None) -> None:
        """Queue the next occurrence of each recurring job (idempotent across workers)."""
        at = _now(now)
        pending = [
            s for s in self.registry.schedules if self._scheduled.get(s.kind) != s.next_at(at)
        ]
        if not pending:
            return
        with session_scope() as session:
            due = {s.kind: service.ensure_scheduled(session, s, now=at) for s in pending}
        self._scheduled.update(due)

    def claim(self, now: datetime | None = None) -> list[int]:
        at = _now(now)
        with session_scope(readonly=True) as session:  # most rounds find no job due
            if not service.any_due(session, now=at):
                return []
        with session_scope() as session:
            return service.claim(
                session, worker_id=self.worker_id, now=at, limit=self.batch_size, lease=self.lease
            )

    def run_job(self, job_id: int, now: datetime | None = None) -> JobStatus | None:
        """Run one claimed job; return its new status, or None if the lease was lost."""
        try:
            with session_scope() as session:
                steps = self._run_handler(session, job_id, now)
            if steps is not None:  # the job commits in steps: outside the job's transaction
                steps()
                with session_scope() as session:
                    self._complete(session, job_id, now)
            return JobStatus.DONE
        except LeaseLost:
            log.warning("job %d: lease lost to another worker, rolled back", job_id)
            return None
        except Exception:  # whatever a handler raises fails this job only, never the batch
            error = traceback.format_exc()
            log.warning("job %d failed", job_id, exc_info=True)
        with session_scope() as session:
            return service.record_failure(
                session, job_id, worker_id=self.worker_id, error=error, now=_now(now)
            )

    def _run_handler(
        self, session: Session, job_id: int, now: datetime | None
    ) -> Callable[[], None] | None:
        """Run the job's handler in `session` and complete it there; a job that commits in
        steps is answered instead, to run once this transaction has ended."""
        job = service.claimed(session, job_id, worker_id=self.worker_id)
        if job is None:
            raise LeaseLost(job_id)
        payload = dict(job.payload)
        in_steps = self.registry.steps_handler(job.kind)
        if in_steps is not None:
            return lambda: in_steps(payload)
        self.registry.handler(job.kind)(session, payload)
        self._complete(session, job_id, now)
        return None

    def _complete(self, session: Session, job_id: int, now: datetime | None) -> None:
        if not service.complete(session, job_id, worker_id=self.worker_id, now=_now(now)):
            raise LeaseLost(job_id)

    def release(self, job_ids: Sequence[int]) -> None:
        with session_scope() as session:
            service.release(session, job_ids, worker_id=self.worker_id)


def _now(now: datetime | None) -> datetime:
    return now if now is not None else clock.now()


def run_pool(workers: Sequence[Worker], stop: threading.Event) -> None:
    """Run the first worker here and the others in threads, until `stop` is set."""
    threads = [
        threading.Thread(target=w.run_forever, args=(stop,), name=w.worker_id, daemon=True)
        for w in workers[1:]
    ]
    for thread in threads:
        thread.start()
    try:
        workers[0].run_forever(stop)
    finally:
        stop.set()
        for thread in threads:
            thread.join()


class EmbeddedWorker:
    """The worker as a daemon thread of the web process (`regulars serve` on SQLite)."""

    def __init__(self, worker: Worker | None = None) -> None:
        self._worker = worker
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._worker is None:
            service.discover()
            self._worker = Worker()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._worker.run_forever, args=(self._stop,), name="regulars-worker", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to stop after its current job, and wait for it."""
        self._stop.set()
        service.wake()
        if self._thread is not None:
            self._thread.join(timeout)
