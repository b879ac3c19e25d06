"""Broadcasts: one message to a whole segment (a newsletter, a sale, a new collection).

Creating one queues a job at `send_at`. The job walks the segment in chunks of members
(`messages.broadcast` re-queues itself per chunk, so a crash resumes from the cursor and
the idempotency key `broadcast:<id>:<customer>` keeps anyone from getting it twice). Each
chunk goes through `send_many`: the same policies as any message. With `local_time` each
customer's delivery waits for that wall-clock time in their own zone; with a throttle the
deliveries are spread at that many per minute. Cancelling stops the walk and cancels every
delivery not yet handed to a provider.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.customers import service as customers
from regulars.errors import Conflict, NotFound
from regulars.jobs import service as jobs
from regulars.kit import clock, ids
from regulars.messages import repository, templates
from regulars.messages.models import Broadcast, MessageChannel
from regulars.messages.schemas import BroadcastCreate, BroadcastRead
from regulars.messages.sending import SendRequest, send_many
from regulars.segments import service as segments

CHUNK = 1000
EXPAND_JOB = "messages.broadcast"


class BroadcastStatus(StrEnum):
    SCHEDULED = "scheduled"
    SENDING = "sending"  # members are being queued
    SENT = "sent"  # every member queued; deliveries go out at their own pace
    CANCELLED = "cancelled"


def create(session: Session, data: BroadcastCreate) -> BroadcastRead:
    if segments.find(session, data.segment) is None:
        raise NotFound(f"no segment {data.segment!r}", details={"segment": data.segment})
    if not templates.by_key(session, data.template):
        raise NotFound(f"no template {data.template!r}", details={"template": data.template})
    if (
        data.channel != "auto"
        and templates.by_key(session, data.template).get(MessageChannel(data.channel)) is None
    ):
        raise NotFound(f"template {data.template!r} has no {data.channel} content")
    now = clock.now()
    broadcast = Broadcast(
        id=ids.new_id(),
        name=data.name,
        template_key=data.template,
        channel=str(data.channel),
        segment_key=data.segment,
        status=BroadcastStatus.SCHEDULED,
        send_at=data.send_at or now,
        local_time=data.local_time,
        throttle_per_minute=data.throttle_per_minute,
        audience=0,
        created_at=now,
    )
    session.add(broadcast)
    session.flush()
    _queue_chunk(session, broadcast, due_at=broadcast.send_at)
    return read(session, broadcast)


def _queue_chunk(session: Session, broadcast: Broadcast, *, due_at: datetime) -> None:
    jobs.enqueue(
        session,
        EXPAND_JOB,
        {"broadcast": broadcast.id},
        due_at=due_at,
        idempotency_key=f"{EXPAND_JOB}:{broadcast.id}:{broadcast.cursor or ''}",
    )
    jobs.wake_after_commit(session, jobs.Lane.JOBS)


def expand(session: Session, broadcast_id: str) -> int:
    """Queue the next chunk of members; answers how many were queued (0 when done)."""
    broadcast = repository.get_broadcast(session, broadcast_id, lock=True)
    if broadcast is None or broadcast.status in (BroadcastStatus.SENT, BroadcastStatus.CANCELLED):
        return 0
    now = clock.now()
    if broadcast.status == BroadcastStatus.SCHEDULED:
        broadcast.status, broadcast.started_at = BroadcastStatus.SENDING, now
    members = segments.member_ids_after(
        session, broadcast.segment_key, after=broadcast.cursor, limit=CHUNK
    )
    if members:
        send_many(session, _requests(session, broadcast, members))
        broadcast.audience += len(members)
        broadcast.cursor = members[-1]
    if len(members) < CHUNK:
        broadcast.status, broadcast.finished_at = BroadcastStatus.SENT, now
    else:
        _queue_chunk(session, broadcast, due_at=now)
    session.flush()
    return len(members)


def _requests(session: Session, broadcast: Broadcast, members: list[str]) -> list[SendRequest]:
    zones = _zones(session, members) if broadcast.local_time else {}
    channel = None if broadcast.channel == "auto" else MessageChannel(broadcast.channel)
    requests = []
    started = broadcast.started_at or broadcast.send_at
    for offset, customer_id in enumerate(members, start=broadcast.audience):
        not_before = started
        if broadcast.local_time:
            not_before = local_moment(broadcast.send_at, broadcast.local_time, zones[customer_id])
        if broadcast.throttle_per_minute:
            spread = timedelta(minutes=offset / broadcast.throttle_per_minute)
            not_before = max(not_before, started + spread)
        requests.append(
            SendRequest(
                customer_id=customer_id,
                template=broadcast.template_key,
                channel=channel,
                idempotency_key=f"broadcast:{broadcast.id}:{customer_id}",
                broadcast_id=broadcast.id,
                not_before=not_before,
            )
        )
    return requests


def _zones(session: Session, members: list[str]) -> dict[str, str]:
    default = get_settings().default_timezone
    zones = customers.time_zones(session, members)  # one query, not whole profiles
    return {m: zones.get(m) or default for m in members}


def local_moment(send_at: datetime, local_time: str, zone_name: str) -> datetime:
    """The first moment at or after `send_at` when the clock in `zone_name` reads
    `local_time` (a time skipped by a DST gap is taken just after the gap)."""
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo(get_settings().default_timezone)
    hour, minute = (int(part) for part in local_time.split(":"))
    day = send_at.astimezone(zone).date()
    for offset in range(3):
        local = datetime.combine(day + timedelta(days=offset), time(hour, minute), tzinfo=zone)
        moment = local.astimezone(send_at.tzinfo)
        if moment >= send_at:
            return moment
    raise AssertionError("a wall-clock time recurs within three days")  # pragma: no cover


def cancel(session: Session, broadcast_id: str) -> BroadcastRead:
    broadcast = require(session, broadcast_id)
    if broadcast.status == BroadcastStatus.CANCELLED:
        raise Conflict("this broadcast is already cancelled")
    now = clock.now()
    broadcast.status, broadcast.cancelled_at = BroadcastStatus.CANCELLED, now
    repository.cancel_pending(session, broadcast_id=broadcast.id, now=now)
    session.flush()
    return read(session, broadcast)


def require(session: Session, broadcast_id: str) -> Broadcast:
    broadcast = repository.get_broadcast(session, broadcast_id, lock=True)
    if broadcast is None:
        raise NotFound(f"no broadcast {broadcast_id!r}", details={"id": broadcast_id})
    return broadcast


def get(session: Session, broadcast_id: str) -> BroadcastRead | None:
    broadcast = repository.get_broadcast(session, broadcast_id)
    return None if broadcast is None else read(session, broadcast)


def list_recent(session: Session, *, limit: int = 50) -> list[BroadcastRead]:
    return [read(session, b) for b in repository.list_broadcasts(session, limit=limit)]


def read(session: Session, broadcast: Broadcast) -> BroadcastRead:
    return BroadcastRead(
        id=broadcast.id,
        name=broadcast.name,
        template=broadcast.template_key,
        segment=broadcast.segment_key,
        channel=broadcast.channel,
        status=broadcast.status,
        send_at=broadcast.send_at,
        local_time=broadcast.local_time,
        throttle_per_minute=broadcast.throttle_per_minute,
        audience=broadcast.audience,
        progress=repository.status_counts(session, broadcast_id=broadcast.id),
        created_at=broadcast.created_at,
        started_at=broadcast.started_at,
        finished_at=broadcast.finished_at,
        cancelled_at=broadcast.cancelled_at,
    )
