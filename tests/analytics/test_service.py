"""The overview's refresh: per-day figures from ingested events, settled days kept as stored,
`full` counting them again, and the worker's job storing the snapshot."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from regulars.analytics import service
from regulars.analytics.service import Summary
from regulars.db import Database, session_scope
from regulars.jobs import service as jobs
from regulars.kit import clock
from regulars.kit.clock import FrozenClock
from regulars.kit.ids import id_floor, new_id
from regulars.messages import service as messages
from regulars.messages.models import MessageChannel
from regulars.messages.sending import SendRequest
from tests.customers.helpers import ingest, owner_of

NOW = datetime(2026, 5, 20, 10, 42, tzinfo=UTC)
TODAY = NOW.replace(hour=0, minute=0)


@pytest.fixture
def moved_clock(database: Database) -> Iterator[FrozenClock]:
    with clock.frozen(NOW) as frozen:
        yield frozen


def track(user: str, event: str, at: datetime, message_id: str, **props: Any) -> None:
    message = {"type": "track", "userId": user, "event": event, "timestamp": at.isoformat()}
    result = ingest([message | {"messageId": message_id, "properties": props}])
    assert result.rejected == []


def refresh(*, full: bool = False) -> Summary:
    with session_scope() as session:
        return service.refresh(session, now=clock.now(), full=full)


def stored() -> Summary | None:
    with session_scope(readonly=True) as session:
        return service.overview(session)


def day(summary: Summary, at: datetime) -> tuple[int, int, int]:
    """(events, orders, revenue in cents) of the day `at` falls on."""
    i = summary.days.index(at.date().isoformat())
    return summary.events_per_day[i], summary.orders_per_day[i], summary.revenue_per_day_cents[i]


def test_refresh_counts_each_day_and_stores_the_figures(moved_clock: FrozenClock) -> None:
    track("ann", "Order Completed", TODAY + timedelta(hours=1), "o1", revenue=12.5)
    track("ann", "Order Completed", TODAY - timedelta(days=3, hours=-23), "o2", revenue=30)
    track("bob", "Viewed Product", TODAY - timedelta(days=3), "v1")  # 00:00, that day's first
    track("bob", "Order Completed", TODAY - timedelta(days=2, seconds=1), "o3", revenue=5)
    track("old", "Order Completed", TODAY - timedelta(days=40), "o4", revenue=99)

    summary = refresh()

    assert summary.computed_at == NOW and len(summary.days) == service.DAYS
    assert summary.days[-1] == "2026-05-20" and summary.days[0] == "2026-04-21"
    assert day(summary, TODAY) == (1, 1, 1250)
    assert day(summary, TODAY - timedelta(days=3)) == (3, 2, 3500)  # v1, o2 and o3 at 23:59:59
    assert day(summary, TODAY - timedelta(days=2)) == (0, 0, 0)
    assert summary.events == 4 and sum(summary.revenue_per_day_cents) == 4750
    assert (summary.customers, summary.active, summary.orders) == (3, 2, 4)
    assert summary.revenue_cents == 14650  # every order ever, from the customers' facts
    assert stored() == summary


def test_a_settled_day_keeps_its_figures_until_a_full_refresh(moved_clock: FrozenClock) -> None:
    settled = TODAY - timedelta(days=3)
    track("ann", "Order Completed", settled + timedelta(hours=9), "o1", revenue=10)
    refresh()
    moved_clock.advance(timedelta(days=1))
    assert day(refresh(), settled) == (1, 1, 1000)

    track("ann", "Order Completed", settled + timedelta(hours=10), "late", revenue=7)
    moved_clock.advance(timedelta(minutes=1))
    kept = refresh()
    assert day(kept, settled) == (1, 1, 1000)
    assert kept.orders == 2  # the totals are counted again all the same

    assert day(refresh(full=True), settled) == (2, 2, 1700)
    stored_now = stored()
    assert stored_now is not None and day(stored_now, settled) == (2, 2, 1700)


def test_yesterday_is_counted_once_more_when_it_becomes_two_days_old(
    moved_clock: FrozenClock,
) -> None:
    yesterday = TODAY - timedelta(days=1)
    refresh()
    track("ann", "Viewed Product", yesterday + timedelta(hours=23), "v1")
    moved_clock.set(TODAY + timedelta(days=1, minutes=1))  # just after midnight
    assert day(refresh(), yesterday) == (1, 0, 0)  # last counted while it was yesterday
    track("ann", "Viewed Product", yesterday + timedelta(hours=22), "v2")
    moved_clock.advance(timedelta(minutes=1))
    assert day(refresh(), yesterday) == (1, 0, 0)  # settled now


def test_todays_figures_update_on_the_next_refresh(moved_clock: FrozenClock) -> None:
    track("ann", "Viewed Product", NOW - timedelta(hours=1), "v1")
    assert day(refresh(), TODAY) == (1, 0, 0)
    track("ann", "Order Completed", NOW - timedelta(minutes=5), "o1", revenue=3)
    moved_clock.advance(timedelta(minutes=1))
    fresh = refresh()
    assert day(fresh, TODAY) == (2, 1, 300)
    assert fresh.computed_at == NOW + timedelta(minutes=1)


def send_sms(customer_id: str, at: datetime) -> None:
    with clock.frozen(at), session_scope() as session:  # a delivery's id is made at its time
        request = SendRequest(customer_id, content={"body": "Hi"}, channel=MessageChannel.SMS)
        messages.send(session, request)


def test_messages_are_counted_by_channel_and_status_per_day(moved_clock: FrozenClock) -> None:
    identify = {"type": "identify", "userId": "ann", "traits": {"phone": "+14155552671"}}
    assert (
        ingest(
            [identify | {"messageId": "i1", "timestamp": (NOW - timedelta(days=60)).isoformat()}]
        ).accepted
        == 1
    )
    ann = owner_of("ann")
    assert ann is not None
    send_sms(ann, TODAY - timedelta(days=40))
    send_sms(ann, TODAY - timedelta(days=3, hours=-12))
    send_sms(ann, NOW - timedelta(minutes=1))

    assert refresh().messages == {"sms": {"queued": 2}}
    moved_clock.advance(timedelta(days=1))
    send_sms(ann, clock.now())
    assert refresh().messages == {"sms": {"queued": 3}}  # day -3 from the snapshot, +1 today


def test_the_worker_job_refreshes_the_stored_snapshot(moved_clock: FrozenClock) -> None:
    assert "regulars.analytics.tasks" in jobs.discover("regulars.analytics")
    tasks = importlib.import_module("regulars.analytics.tasks")
    handler = jobs.registry.steps_handler("analytics.refresh")
    assert handler is not None and handler is tasks.refresh
    assert {s.kind: s.every for s in jobs.registry.schedules}["analytics.refresh"] == timedelta(
        minutes=1
    )
    track("ann", "Viewed Product", NOW - timedelta(hours=2), "v1")
    assert stored() is None
    handler({})  # counts in a read, then stores in a write of its own
    found = stored()
    assert found is not None
    assert (found.computed_at, found.customers, day(found, TODAY)) == (NOW, 1, (1, 0, 0))


def test_id_floor_bounds_the_ids_made_from_that_moment(moved_clock: FrozenClock) -> None:
    before = new_id()
    moved_clock.advance(timedelta(milliseconds=1))
    floor = id_floor(clock.now())
    after = new_id()
    assert before < floor <= after
    assert floor[:10] == after[:10] and floor[10:] == "0" * 16  # that millisecond, no random bits
