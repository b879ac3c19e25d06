"""Broadcasts on both databases, run by the real worker loop: the expand job walks a
segment in chunks, each member gets one delivery through the usual policies, local send
times and throttles set each delivery's due time, and cancelling stops what has not gone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from regulars.db import Database, session_scope
from regulars.jobs.models import Job, JobStatus
from regulars.jobs.service import Registry
from regulars.kit import clock
from regulars.kit.clock import FrozenClock
from regulars.messages import broadcasts, dispatch, outcomes, providers, repository, service, tasks
from regulars.messages.models import DeliveryStatus, MessageChannel
from regulars.messages.schemas import BroadcastCreate, BroadcastRead, DeliveryRead, ProviderWrite
from regulars.segments import service as segments
from regulars.segments.schemas import SegmentCreate
from regulars.worker import Worker
from tests.messages.conftest import CustomerFactory, TemplateFactory
from tests.messages.smtp_sink import free_port

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)  # a Monday: 11:00 in Berlin, 05:00 in New York
BEANS_CLUB = {"type": "profile", "field": "traits.club", "op": "equals", "value": "beans"}


@pytest.fixture
def moved(database: Database) -> Iterator[FrozenClock]:
    with clock.frozen(T0) as frozen:
        yield frozen


@pytest.fixture
def worker() -> Worker:
    """The worker loop with just the messages domain's broadcast job and delivery queue."""
    registry = Registry()
    registry.task(broadcasts.EXPAND_JOB)(tasks.expand_broadcast)
    registry.queue("messages.deliveries")(tasks.deliver_due)
    return Worker(registry=registry, worker_id="w1")


def members(customer: CustomerFactory, count: int, *, timezone: str | None = None) -> list[str]:
    """`count` club members with email consent, in id order (the order a broadcast walks)."""
    made = [
        customer(
            f"member{n}",
            email=f"member{n}@example.com",
            first_name=f"Member{n}",
            consents={"email": "subscribed"},
            traits={"club": "beans"},
            timezone=timezone,
        )
        for n in range(count)
    ]
    return sorted(made)


def segment(key: str = "beans_club") -> None:
    with session_scope() as session:
        segments.create(session, SegmentCreate(key=key, name="Beans club", rule=BEANS_CLUB))
        segments.compute(session, key)


def create(**fields: object) -> BroadcastRead:
    data = BroadcastCreate.model_validate(
        {"name": "May beans", "template": "beans_news", "segment": "beans_club", **fields}
    )
    with session_scope() as session:
        return broadcasts.create(session, data)


def read(broadcast_id: str) -> BroadcastRead:
    with session_scope(readonly=True) as session:
        found = broadcasts.get(session, broadcast_id)
    assert found is not None
    return found


def deliveries(broadcast_id: str) -> dict[str, DeliveryRead]:
    """The broadcast's deliveries by customer id (one each, or the assertion fails)."""
    with session_scope(readonly=True) as session:
        page = service.list_deliveries(session, broadcast_id=broadcast_id, limit=1000)
    found = {d.customer_id: d for d in page.items}
    assert len(found) == len(page.items), "a customer got the broadcast twice"
    return found


def run_until_idle(worker: Worker, now: datetime) -> int:
    """Worker rounds at `now` until one finds nothing to do; answers how many rounds worked."""
    for rounds in range(50):
        if worker.run_once(now) == 0:
            return rounds
    raise AssertionError("the worker still had work after 50 rounds")


def expand_jobs() -> list[JobStatus]:
    with session_scope(readonly=True) as session:
        return list(
            session.scalars(
                select(Job.status).where(Job.kind == broadcasts.EXPAND_JOB).order_by(Job.id)
            )
        )


def test_broadcast_reaches_each_member_once_and_counts_progress_by_status(
    moved: FrozenClock, worker: Worker, customer: CustomerFactory, template: TemplateFactory
) -> None:
    club = members(customer, 4)
    quitter = customer(
        "quitter",
        email="quitter@example.com",
        first_name="Quitter",
        consents={"email": "unsubscribed"},
        traits={"club": "beans"},
    )
    customer("outsider", email="outsider@example.com", consents={"email": "subscribed"})
    segment()
    template("beans_news", "email", category="marketing")

    made = create()
    assert (made.status, made.audience, made.progress) == ("scheduled", 0, {})
    run_until_idle(worker, T0)

    done = read(made.id)
    assert (done.status, done.audience) == ("sent", 5)
    assert (done.started_at, done.finished_at) == (T0, T0)
    assert done.progress == {"delivered": 4, "suppressed": 1}  # the sandbox delivers at once
    sent = deliveries(made.id)
    assert set(sent) == {*club, quitter}
    assert {c for c, d in sent.items() if d.status == DeliveryStatus.DELIVERED} == set(club)
    assert (sent[quitter].reason or "").startswith("unsubscribed: ")


def test_expand_run_twice_for_the_same_cursor_sends_nobody_twice(
    moved: FrozenClock,
    worker: Worker,
    customer: CustomerFactory,
    template: TemplateFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(broadcasts, "CHUNK", 3)
    club = members(customer, 5)
    segment()
    template("beans_news", "email", category="marketing")
    made = create()

    with session_scope() as session:
        assert broadcasts.expand(session, made.id) == 3
    with session_scope() as session:  # as if a second worker ran the job for the same cursor
        row = repository.get_broadcast(session, made.id)
        assert row is not None
        row.cursor, row.audience = None, 0
    with session_scope() as session:
        assert broadcasts.expand(session, made.id) == 3
    run_until_idle(worker, T0)

    sent = deliveries(made.id)  # fails if anyone has two
    assert set(sent) == set(club)
    assert {d.status for d in sent.values()} == {DeliveryStatus.DELIVERED}
    assert read(made.id).progress == {"delivered": 5}


def test_local_time_sends_at_that_hour_in_each_customers_zone(
    moved: FrozenClock, worker: Worker, customer: CustomerFactory, template: TemplateFactory
) -> None:
    [berlin] = members(customer, 1, timezone="Europe/Berlin")
    york = customer(
        "york",
        email="york@example.com",
        timezone="America/New_York",
        consents={"email": "subscribed"},
        traits={"club": "beans"},
    )
    nowhere = customer(
        "nowhere",
        email="nowhere@example.com",
        consents={"email": "subscribed"},
        traits={"club": "beans"},
    )
    segment()
    template("beans_news", "email", category="marketing")

    made = create(local_time="10:00")
    run_until_idle(worker, T0)

    due = {c: d.next_attempt_at for c, d in deliveries(made.id).items()}
    assert due == {
        # 10:00 CEST (UTC+2) today is past (it is 11:00 there): tomorrow's.
        berlin: datetime(2026, 5, 5, 8, 0, tzinfo=UTC),
        # 10:00 EDT (UTC-4) today.
        york: datetime(2026, 5, 4, 14, 0, tzinfo=UTC),
        # No zone: REGULARS_DEFAULT_TIMEZONE, UTC.
        nowhere: datetime(2026, 5, 4, 10, 0, tzinfo=UTC),
    }
    moved.set(datetime(2026, 5, 4, 13, 59, tzinfo=UTC))
    run_until_idle(worker, clock.now())
    assert read(made.id).progress == {"delivered": 1, "queued": 2}
    moved.set(datetime(2026, 5, 4, 14, 0, tzinfo=UTC))
    run_until_idle(worker, clock.now())
    assert read(made.id).progress == {"delivered": 2, "queued": 1}


def test_throttle_spreads_deliveries_one_per_second_across_chunks(
    moved: FrozenClock,
    worker: Worker,
    customer: CustomerFactory,
    template: TemplateFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(broadcasts, "CHUNK", 2)
    club = members(customer, 5)
    segment()
    template("beans_news", "email", category="marketing")

    made = create(throttle_per_minute=60)
    run_until_idle(worker, T0)

    due = {c: d.next_attempt_at for c, d in deliveries(made.id).items()}
    assert due == {
        club[0]: None,  # sent at T0: nothing more to attempt
        club[1]: T0 + timedelta(seconds=1),
        club[2]: T0 + timedelta(seconds=2),
        club[3]: T0 + timedelta(seconds=3),
        club[4]: T0 + timedelta(seconds=4),
    }
    assert read(made.id).progress == {"delivered": 1, "queued": 4}
    moved.set(T0 + timedelta(seconds=2))
    run_until_idle(worker, clock.now())
    assert read(made.id).progress == {"delivered": 3, "queued": 2}


def test_cancel_stops_the_walk_and_cancels_what_has_not_gone(
    moved: FrozenClock,
    worker: Worker,
    customer: CustomerFactory,
    template: TemplateFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(broadcasts, "CHUNK", 2)
    club = members(customer, 5)
    segment()
    template("beans_news", "email", category="marketing")
    made = create(throttle_per_minute=60)

    assert worker.run_once(T0) == 2  # the first chunk's job, then the first delivery
    with session_scope() as session:
        cancelled = broadcasts.cancel(session, made.id)
    assert (cancelled.status, cancelled.cancelled_at) == ("cancelled", T0)
    moved.set(T0 + timedelta(minutes=5))
    run_until_idle(worker, clock.now())  # runs the next chunk's job: it does nothing
    with session_scope() as session:
        assert broadcasts.expand(session, made.id) == 0

    sent = deliveries(made.id)
    assert {c: d.status for c, d in sent.items()} == {
        club[0]: DeliveryStatus.DELIVERED,
        club[1]: DeliveryStatus.CANCELLED,
    }
    assert sent[club[1]].reason == "broadcast cancelled"
    final = read(made.id)
    assert (final.status, final.audience) == ("cancelled", 2)
    assert final.progress == {"delivered": 1, "cancelled": 1}
    assert expand_jobs() == [JobStatus.DONE, JobStatus.DONE]


@pytest.mark.parametrize(("count", "jobs"), [(8, 3), (6, 3), (2, 1)])
def test_broadcast_walks_every_chunk_of_a_large_segment(
    moved: FrozenClock,
    worker: Worker,
    customer: CustomerFactory,
    template: TemplateFactory,
    monkeypatch: pytest.MonkeyPatch,
    count: int,
    jobs: int,
) -> None:
    """3 + 3 + 2; 3 + 3 and an empty last chunk that finds the end; 2 in one chunk."""
    monkeypatch.setattr(broadcasts, "CHUNK", 3)
    club = members(customer, count)
    segment()
    template("beans_news", "email", category="marketing")

    made = create()
    run_until_idle(worker, T0)

    assert set(deliveries(made.id)) == set(club)
    done = read(made.id)
    assert (done.status, done.audience, done.progress) == ("sent", count, {"delivered": count})
    assert expand_jobs() == [JobStatus.DONE] * jobs


def test_broadcast_scheduled_later_waits_for_its_time(
    moved: FrozenClock, worker: Worker, customer: CustomerFactory, template: TemplateFactory
) -> None:
    club = members(customer, 2)
    segment()
    template("beans_news", "email", category="marketing")
    later = T0 + timedelta(hours=3)

    made = create(send_at=later.isoformat())
    assert run_until_idle(worker, T0) == 0
    assert deliveries(made.id) == {}
    moved.set(later)
    run_until_idle(worker, later)

    done = read(made.id)
    assert (done.status, done.started_at, done.progress) == ("sent", later, {"delivered": 2})
    assert {d.sent_at for d in deliveries(made.id).values()} == {later}
    assert set(deliveries(made.id)) == set(club)


def test_cancel_while_messages_are_with_a_failing_provider_does_not_retry_them(
    moved: FrozenClock, customer: CustomerFactory, template: TemplateFactory
) -> None:
    """Messages in flight when the broadcast is cancelled cannot be called back; those the
    provider did not take (a timeout, a 5xx) are cancelled instead of retried."""
    members(customer, 2)
    segment()
    template("beans_news", "email", category="marketing")
    config = {"host": "127.0.0.1", "port": free_port(), "security": "none",
              "from_address": "news@shop.example", "timeout": 2}  # fmt: skip
    with session_scope() as session:
        providers.save(
            session, "down", ProviderWrite(channel=MessageChannel.EMAIL, kind="smtp", config=config)
        )
    made = create()
    with session_scope() as session:
        broadcasts.expand(session, made.id)
    with session_scope() as session:
        work = dispatch.claim(session, worker_id="w1", now=T0, limit=10)
    assert len(work.claimed) == 2

    with session_scope() as session:
        broadcasts.cancel(session, made.id)  # both are `sending`: nothing to cancel yet
    results = dispatch.deliver(work, now=T0)
    assert {r.status for r in results} == {DeliveryStatus.DEFERRED}  # the provider is down
    with session_scope() as session:
        outcomes.record(session, work, results, worker_id="w1", now=T0)
    dispatch.close_transports()

    assert {d.status for d in deliveries(made.id).values()} == {DeliveryStatus.CANCELLED}
