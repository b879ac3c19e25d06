"""The segments domain's background work: the time sweep and computes of saved segments."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.customers import service as customers
from regulars.db import chunks, session_scope
from regulars.jobs import service as jobs
from regulars.kit import clock
from regulars.segments import service

log = logging.getLogger(__name__)

SWEEP_EVERY = timedelta(minutes=1)


@jobs.recurring_in_steps("segments.sweep", every=SWEEP_EVERY)
def sweep(payload: Mapping[str, object]) -> None:
    """Once a minute: install the built-in segments, flip memberships that time alone changed.

    In steps, each its own transaction: the built-ins (a write only when one changed), the
    plan (what crossed a window's edge: reads only), each segment's flips, the sweep's
    moment. As one transaction it held SQLite's write lock through its reads, and the tracked
    events of that moment waited. Stopped between steps, the next sweep redoes the plan from
    the last finished sweep: re-evaluating a customer twice changes nothing."""
    changed = service.sweep_in_steps(
        lambda readonly: session_scope(readonly=readonly), now=clock.now()
    )
    if changed:
        log.info("segment sweep changed %s", changed)


@jobs.task("segments.compute")
def compute(session: Session, payload: Mapping[str, object]) -> None:
    """A full compute of one saved segment (queued when it is created or its rule changes)."""
    key = str(payload["segment"])
    if service.find(session, key) is None:
        return  # deleted since it was queued
    result = service.compute(session, key)
    log.info("segment %s computed: %d members", key, result.members)


# Read once, when the worker imports its tasks (REGULARS_RFM_REFRESH_MINUTES).
RFM_REFRESH_EVERY = timedelta(minutes=get_settings().rfm_refresh_minutes)
RFM_CHUNK = 1000  # customers whose scores are written per transaction


@jobs.recurring_in_steps("segments.refresh_rfm", every=RFM_REFRESH_EVERY)
def refresh_rfm(payload: Mapping[str, object]) -> None:
    """Recompute every customer's RFM scores, then the segments that read them (scores move
    for many customers at once, so a full compute beats re-evaluating each one).

    In steps, each its own transaction: one read of the scores that changed, a write per
    RFM_CHUNK customers, a compute per segment. As one transaction it held the write lock
    (SQLite) or the facts rows (PostgreSQL) until the last compute, and every tracked event
    waited that long: seconds at 100,000 customers. Running it twice changes nothing."""
    now = clock.now()
    with session_scope(readonly=True) as session:
        changes = customers.rfm_score_changes(session)
    for chunk in chunks(changes, RFM_CHUNK):
        with session_scope() as session:
            customers.write_rfm_scores(session, chunk)
    log.info("RFM scores changed for %d customers", len(changes))
    with session_scope(readonly=True) as session:
        readers = service.rfm_readers(session)
    for key in readers:
        with session_scope() as session:
            if service.find(session, key) is not None:  # not deleted meanwhile
                service.compute(session, key, now=now)
