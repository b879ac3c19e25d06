"""Enqueue jobs, register their handlers, and record what happened when a worker ran them.

A domain declares its handlers in its own `tasks.py`:

    @task("messages.send")
    def send(session: Session, payload: SendPayload) -> None: ...

    @recurring("jobs.prune", daily_at=time(3, 0), timezone="UTC")
    def prune(session: Session, payload: Mapping[str, object]) -> None: ...

`discover()` imports every `regulars.**.tasks` module so the worker knows them all.
"""

from __future__ import annotations

import importlib
import pkgutil
import random
import re
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import event
from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.errors import RegularsError, ValidationFailed
from regulars.jobs import repository
from regulars.jobs.models import Job, JobStatus
from regulars.kit import clock

P = TypeVar("P", bound=Mapping[str, object])
Handler = Callable[[Session, Any], None]  # the payload type is each handler's own TypedDict
# A job that commits in steps of its own (see Registry.recurring_in_steps): no session given.
StepsHandler = Callable[[Mapping[str, object]], None]
# A domain's own queue table (deliveries, journey runs): claim and work one batch with
# sessions of its own; answer how many items it handled.
QueueDrain = Callable[[str, datetime, int], int]


class HasWork(Protocol):
    """Whether a queue has an item due at `now`: a read, in the session given."""

    def __call__(self, session: Session, *, now: datetime) -> bool: ...


@dataclass(frozen=True)
class Queue:
    name: str
    drain: QueueDrain
    has_work: HasWork | None  # None: drained every round, whatever is due


_KIND = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BACKOFF_BASE = timedelta(seconds=15)
BACKOFF_CAP = timedelta(hours=1)
MAX_ERROR_CHARS = 8000


class UnknownTask(RegularsError):
    code = "unknown_task"
    status = 500


@dataclass(frozen=True)
class Schedule:
    """When a recurring job is due: every fixed interval (anchored at the Unix epoch, so all
    workers agree), or daily at a local wall-clock time in an IANA time zone."""

    kind: str
    every: timedelta | None = None
    daily_at: time | None = None
    timezone: str = "UTC"

    def next_at(self, now: datetime) -> datetime:
        """The first occurrence at or after `now`, in UTC."""
        if self.every is not None:
            periods, rest = divmod(now - _EPOCH, self.every)
            return _EPOCH + (periods + (1 if rest else 0)) * self.every
        assert self.daily_at is not None
        zone = ZoneInfo(self.timezone)
        today = now.astimezone(zone).date()
        for offset in range(3):
            # A time skipped by a DST gap resolves to the same instant shifted by the gap (fold=0).
            local = datetime.combine(today + timedelta(days=offset), self.daily_at, tzinfo=zone)
            if local.astimezone(UTC) >= now:
                return local.astimezone(UTC)
        raise AssertionError("a daily time always recurs within three days")  # pragma: no cover

    def idempotency_key(self, due_at: datetime) -> str:
        return f"recurring:{self.kind}:{due_at.astimezone(UTC).isoformat()}"


def _check_kind(kind: str) -> None:
    if not _KIND.match(kind):
        raise ValidationFailed(f"job kind {kind!r} is not of the form 'domain.verb'")


def _make_schedule(
    kind: str, *, every: timedelta | None, daily_at: time | None, timezone: str
) -> Schedule:
    if (every is None) == (daily_at is None):
        raise ValidationFailed(f"recurring job {kind!r} needs exactly one of every= or daily_at=")
    if every is not None and every <= timedelta(0):
        raise ValidationFailed(f"recurring job {kind!r} needs a positive interval")
    if daily_at is not None and daily_at.tzinfo is not None:
        raise ValidationFailed(f"recurring job {kind!r}: give daily_at naive and timezone=")
    ZoneInfo(timezone)  # an unknown zone fails at import time, not at 3 a.m.
    return Schedule(kind, every=every, daily_at=daily_at, timezone=timezone)


class Registry:
    """Handlers by job kind, and the schedules of recurring jobs."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._in_steps: dict[str, StepsHandler] = {}
        self._schedules: dict[str, Schedule] = {}
        self._queues: dict[str, Queue] = {}

    def task(
        self, kind: str
    ) -> Callable[[Callable[[Session, P], None]], Callable[[Session, P], None]]:
        _check_kind(kind)

        def register(fn: Callable[[Session, P], None]) -> Callable[[Session, P], None]:
            self._add_handler(kind, fn)
            return fn

        return register

    def recurring(
        self,
        kind: str,
        *,
        every: timedelta | None = None,
        daily_at: time | None = None,
        timezone: str = "UTC",
    ) -> Callable[[Callable[[Session, P], None]], Callable[[Session, P], None]]:
        """Register a handler (payload `{}`) and the schedule the worker enqueues it on."""
        _check_kind(kind)
        schedule = _make_schedule(kind, every=every, daily_at=daily_at, timezone=timezone)

        def register(fn: Callable[[Session, P], None]) -> Callable[[Session, P], None]:
            self._add_handler(kind, fn)
            self._schedules[kind] = schedule
            return fn

        return register

    def recurring_in_steps(
        self, kind: str, *, every: timedelta
    ) -> Callable[[StepsHandler], StepsHandler]:
        """Register a recurring job that opens its own transactions (`session_scope()`), one
        per step, instead of running inside the job's: a long job (a refresh of every
        customer) would otherwise hold its locks, and on SQLite the one write lock, until it
        ends, and ingestion would wait that long. The job is marked done in a transaction of
        its own afterwards, so it runs at least once: it must be safe to run again."""
        _check_kind(kind)
        schedule = _make_schedule(kind, every=every, daily_at=None, timezone="UTC")

        def register(fn: StepsHandler) -> StepsHandler:
            self._check_unclaimed(kind, fn)
            self._in_steps[kind] = fn
            self._schedules[kind] = schedule
            return fn

        return register

    def steps_handler(self, kind: str) -> StepsHandler | None:
        """The handler of a job that commits in steps, None for any other kind."""
        return self._in_steps.get(kind)

    def queue(
        self, name: str, *, has_work: HasWork | None = None
    ) -> Callable[[QueueDrain], QueueDrain]:
        """Register a domain queue the worker drains each round: `fn(worker_id, now, limit)`.
        With `has_work`, the worker first asks it in a read, and drains the queue only when
        it has work: a drain takes a write transaction, and on SQLite each waits for the one
        writer behind every tracked event."""
        _check_kind(name)

        def register(fn: QueueDrain) -> QueueDrain:
            self._queues[name] = Queue(name, fn, has_work)
            return fn

        return register

    @property
    def queues(self) -> list[Queue]:
        return [self._queues[name] for name in sorted(self._queues)]

    def _add_handler(self, kind: str, fn: Handler) -> None:
        self._check_unclaimed(kind, fn)
        self._handlers[kind] = fn

    def _check_unclaimed(self, kind: str, fn: Callable[..., object]) -> None:
        """A kind has one handler, in a transaction or in steps (registering the same
        function again, as a re-imported module does, is fine)."""
        known: Callable[..., object] | None = self._handlers.get(kind) or self._in_steps.get(kind)
        if known is not None and _qualified(known) != _qualified(fn):
            raise ValidationFailed(f"job kind {kind!r} already handled by {_qualified(known)}")

    def handler(self, kind: str) -> Handler:
        """The handler that runs in the job's transaction; a kind that commits in steps has
        none (see steps_handler)."""
        if kind in self._in_steps:
            raise UnknownTask(f"job kind {kind!r} commits in steps: run it with steps_handler()")
        try:
            return self._handlers[kind]
        except KeyError:
            raise UnknownTask(f"no handler registered for job kind {kind!r}") from None

    @property
    def kinds(self) -> list[str]:
        return sorted({*self._handlers, *self._in_steps})

    @property
    def schedules(self) -> list[Schedule]:
        return [self._schedules[kind] for kind in sorted(self._schedules)]


def _qualified(fn: Callable[..., object]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


registry = Registry()
task = registry.task
recurring = registry.recurring
recurring_in_steps = registry.recurring_in_steps
queue = registry.queue


class Lane(StrEnum):
    """A worker's two loops (see Worker.run_forever): each is woken by work of its own kind."""

    JOBS = "jobs"
    QUEUES = "queues"  # the domain queues: journey runs, deliveries


# Rung when work was committed that a worker of this process should pick up now, rather
# than at its next poll (a transactional message must reach its provider in milliseconds).
# Each waiting loop has a bell of its own, so every one of them hears each ring; a ring
# wakes only the loops of its lane (a tracked event that queued a journey step does not
# send the jobs loop looking for jobs).
_bells: dict[Lane, weakref.WeakSet[threading.Event]] = {lane: weakref.WeakSet() for lane in Lane}
_bells_lock = threading.Lock()
_WAKE_KEY = "regulars.wake_lanes"
# The domain queues work was committed for in this process since a worker last drained them:
# such a queue is drained without first asking the database whether it has work (a read per
# queue per round, some 15% of the queue lane's time at 100 tracked events a second).
_QUEUED_KEY = "regulars.queued_work"
_queued: set[str] = set()
_queued_lock = threading.Lock()


def wake_after_commit(session: Session, lane: Lane = Lane.QUEUES, *, queue: str = "") -> None:
    """Wake this process's loops of `lane` once the session's transaction commits. `queue`
    names the domain queue that then has work due now (see `take_queued`)."""
    session.info.setdefault(_WAKE_KEY, set()).add(lane)
    if queue:
        session.info.setdefault(_QUEUED_KEY, set()).add(queue)


def take_queued(queue: str) -> bool:
    """Whether work due now was committed for `queue` in this process since the last call
    for it (which forgets it): a worker drains such a queue without looking first."""
    with _queued_lock:
        found = queue in _queued
        _queued.discard(queue)
    return found


def queued_in(session: Session, queue: str) -> bool:
    """Whether this session's transaction queued work due now for `queue`."""
    return queue in session.info.get(_QUEUED_KEY, ())


def forget_queued(session: Session, queue: str) -> None:
    """This transaction took care of the work it queued for `queue` (see `hand_over`):
    its commit need not send the queue's next drain looking for it."""
    session.info.get(_QUEUED_KEY, set()).discard(queue)


@event.listens_for(Session, "after_commit")
def _wake_on_commit(session: Session) -> None:
    queued = session.info.pop(_QUEUED_KEY, None)
    if queued:
        with _queued_lock:
            _queued.update(queued)
    for lane in session.info.pop(_WAKE_KEY, ()):
        wake(lane)


@event.listens_for(Session, "after_rollback")
def _forget_on_rollback(session: Session) -> None:
    session.info.pop(_WAKE_KEY, None)
    session.info.pop(_QUEUED_KEY, None)


def wake(lane: Lane | None = None) -> None:
    """Ring the bells of `lane`, or of every lane (stopping a worker)."""
    lanes = list(Lane) if lane is None else [lane]
    with _bells_lock:
        bells = [bell for each in lanes for bell in _bells[each]]
    for bell in bells:
        bell.set()


def new_bell(lane: Lane) -> threading.Event:
    """A bell `wake(lane)` rings, for one loop of that lane to wait on (see `wait_for_work`)."""
    bell = threading.Event()
    with _bells_lock:
        _bells[lane].add(bell)
    return bell


def wait_for_work(bell: threading.Event, timeout: float) -> bool:
    """Wait until the bell rings or `timeout` seconds pass; True when it rang. The bell is
    cleared before the caller's next round, which then sees everything committed before
    the ring."""
    rang = bell.wait(timeout)
    bell.clear()
    return rang


# --- hand-over between the queues of one worker's round ---
#
# A drain may take the first step of a later queue's work inside its own transaction and
# hand the result over: a journey step claims the deliveries it queued, and the deliveries
# drain that follows in the same round of the same worker sends them without a claim
# transaction of its own (on SQLite, one wait fewer for the one writer on an event's way to
# its provider). Only within Worker.drain_queues, and only to a queue that round drains
# later: work handed to nobody would wait out its lease.

_round = threading.local()  # .worker_id and .later: the queues this round drains after this one
_handed: dict[tuple[str, str], list[object]] = {}  # (queue, worker id) -> work handed over
_handed_lock = threading.Lock()


@contextmanager
def draining(worker_id: str, *, later: Sequence[str]) -> Iterator[None]:
    """Mark this thread as draining a queue of `worker_id`'s round, `later` to come."""
    _round.worker_id, _round.later = worker_id, frozenset(later)
    try:
        yield
    finally:
        _round.worker_id, _round.later = None, frozenset()


def drained_later(queue: str, worker_id: str) -> bool:
    """Whether `worker_id`'s round drains `queue` after the drain running in this thread:
    work handed over to it now is taken within the same round."""
    return getattr(_round, "worker_id", None) == worker_id and queue in _round.later


def hand_over(queue: str, worker_id: str, work: object) -> None:
    """Give `work`, committed and claimed by `worker_id`, to its next drain of `queue`."""
    with _handed_lock:
        _handed.setdefault((queue, worker_id), []).append(work)


def take_handed(queue: str, worker_id: str) -> list[object]:
    """The work handed over to `worker_id`'s drain of `queue` (forgotten once taken)."""
    with _handed_lock:
        return _handed.pop((queue, worker_id), [])


def has_handed(queue: str, worker_id: str) -> bool:
    """Whether work waits for `worker_id`'s drain of `queue` (see `hand_over`)."""
    with _handed_lock:
        return (queue, worker_id) in _handed


def discover(package: str = "regulars") -> list[str]:
    """Import every `<package>.**.tasks` module, registering its handlers; return their names."""
    root = importlib.import_module(package)

    def _raise(name: str) -> None:
        raise ImportError(f"cannot import {name} while looking for tasks modules")

    found = []
    for module in pkgutil.walk_packages(root.__path__, f"{package}.", onerror=_raise):
        if module.name.rsplit(".", 1)[-1] == "tasks":
            importlib.import_module(module.name)
            found.append(module.name)
    return found


def enqueue(
    session: Session,
    kind: str,
    payload: Mapping[str, object],
    *,
    due_at: datetime | None = None,
    idempotency_key: str | None = None,
    max_attempts: int | None = None,
) -> int:
    """Queue a job; with an idempotency key already used, return the existing job's id."""
    _check_kind(kind)
    if max_attempts is None:
        max_attempts = get_settings().job_max_attempts
    elif max_attempts < 1:
        raise ValidationFailed("max_attempts must be at least 1")
    now = clock.now()
    job_id = repository.add(
        session,
        kind=kind,
        payload=payload,
        due_at=due_at or now,
        max_attempts=max_attempts,
        created_at=now,
        idempotency_key=idempotency_key,
    )
    if job_id is None:
        assert idempotency_key is not None
        job_id = repository.get_id_by_idempotency_key(session, idempotency_key)
        assert job_id is not None, "a conflicting job is committed before ON CONFLICT returns"
    return job_id


def ensure_scheduled(session: Session, schedule: Schedule, *, now: datetime) -> datetime:
    """Make sure the next occurrence of a recurring job is queued; return when it is due."""
    due_at = schedule.next_at(now)
    enqueue(
        session, schedule.kind, {}, due_at=due_at, idempotency_key=schedule.idempotency_key(due_at)
    )
    return due_at


def backoff(attempt: int, *, rng: Callable[[], float] = random.random) -> timedelta:
    """Exponential from 15 s, capped at an hour, with jitter: between half and all of it."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (1 << min(max(attempt - 1, 0), 20)))
    return ceiling * (0.5 + rng() / 2)


def any_due(session: Session, *, now: datetime) -> bool:
    """Whether `claim` would find work: a read, to skip its write transaction when not."""
    return repository.any_due(session, now=now)


def claim(
    session: Session, *, worker_id: str, now: datetime, limit: int, lease: timedelta
) -> list[int]:
    """Claim a batch of due jobs for this worker, failing those that exhausted their attempts
    by killing the workers that ran them."""
    repository.fail_abandoned(session, now=now)
    return repository.claim_due(
        session, now=now, limit=limit, worker_id=worker_id, locked_until=now + lease
    )


def claimed(session: Session, job_id: int, *, worker_id: str) -> Job | None:
    """The job, if this worker still holds its lease."""
    return repository.get_claimed(session, job_id, worker_id=worker_id)


def complete(session: Session, job_id: int, *, worker_id: str, now: datetime) -> bool:
    """Mark a job done in the handler's transaction; False if the lease was lost meanwhile."""
    return repository.mark_done(session, job_id, worker_id=worker_id, now=now)


def record_failure(
    session: Session, job_id: int, *, worker_id: str, error: str, now: datetime
) -> JobStatus | None:
    """Queue the job again after a backoff, or fail it on its last attempt; None if the lease
    was lost (another worker owns the job now)."""
    job = repository.get_claimed(session, job_id, worker_id=worker_id)
    if job is None:
        return None
    error = error[-MAX_ERROR_CHARS:]
    if job.attempts >= job.max_attempts:
        repository.mark_failed(session, job_id, worker_id=worker_id, error=error, now=now)
        return JobStatus.FAILED
    due_at = now + backoff(job.attempts)
    repository.mark_retry(session, job_id, worker_id=worker_id, error=error, due_at=due_at)
    return JobStatus.QUEUED


def release(session: Session, job_ids: Sequence[int], *, worker_id: str) -> int:
    return repository.release(session, job_ids, worker_id=worker_id)


def prune(session: Session, *, now: datetime, keep: timedelta = timedelta(days=7)) -> int:
    """Delete done and failed jobs that finished more than `keep` ago."""
    return repository.delete_finished_before(session, before=now - keep)
