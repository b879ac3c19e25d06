"""The segments domain's background work: the time sweep and computes of saved segments."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.jobs import service as jobs
from regulars.segments import service

log = logging.getLogger(__name__)

SWEEP_EVERY = timedelta(minutes=1)


@jobs.recurring("segments.sweep", every=SWEEP_EVERY)
def sweep(session: Session, payload: Mapping[str, object]) -> None:
    """Once a minute: flip memberships that time alone changed; install built-in segments."""
    changed = service.sweep(session)
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


@jobs.recurring("segments.refresh_rfm", every=RFM_REFRESH_EVERY)
def refresh_rfm(session: Session, payload: Mapping[str, object]) -> None:
    """Recompute every customer's RFM scores, then the segments that read them (scores move
    for many customers at once, so a full compute beats re-evaluating each one)."""
    changed = service.refresh_rfm(session)
    log.info("RFM scores changed for %d customers", changed)
