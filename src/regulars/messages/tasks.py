"""The messages domain's background work: carry deliveries to providers, expand broadcasts."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.db import session_scope
from regulars.jobs import service as jobs
from regulars.kit import clock
from regulars.messages import broadcasts, dispatch, outcomes
from regulars.messages import service as _service  # noqa: F401  (registers the merge listener)
from regulars.messages.sending import DELIVERIES_QUEUE

log = logging.getLogger(__name__)


@jobs.queue(DELIVERIES_QUEUE, has_work=dispatch.any_due)
def deliver_due(worker_id: str, now: datetime, limit: int) -> int:
    """One round: claim due deliveries, hand them to providers, record what happened.
    Its own batch size (REGULARS_DISPATCH_BATCH_SIZE): providers take messages in bulk."""
    handed = jobs.take_handed(DELIVERIES_QUEUE, worker_id)
    if handed:  # claimed by this round's journey step (messages.claim_queued_deliveries)
        at = max(now, clock.now())  # they were claimed after the round began
        return sum(_deliver(worker_id, _round_of(work), at) for work in handed)
    with session_scope() as session:
        work = dispatch.claim(
            session, worker_id=worker_id, now=now, limit=get_settings().dispatch_batch_size
        )
    return _deliver(worker_id, work, now) if work.claimed else 0


def _round_of(work: object) -> dispatch.Round:
    assert isinstance(work, dispatch.Round), work
    return work


def _deliver(worker_id: str, work: dispatch.Round, now: datetime) -> int:
    results = dispatch.deliver(work, now=now)
    with session_scope() as session:
        outcomes.record(session, work, results, worker_id=worker_id, now=now)
    return len(work.claimed)


@jobs.task(broadcasts.EXPAND_JOB)
def expand_broadcast(session: Session, payload: Mapping[str, object]) -> None:
    """Queue the next chunk of a broadcast's audience (the job re-queues itself)."""
    queued = broadcasts.expand(session, str(payload["broadcast"]))
    log.info("broadcast %s: %d more deliveries queued", payload["broadcast"], queued)
