"""Analytics' background work: the overview's figures, refreshed every minute."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy.orm import Session

from regulars.analytics import service
from regulars.jobs import service as jobs
from regulars.kit import clock

log = logging.getLogger(__name__)


@jobs.recurring("analytics.refresh", every=timedelta(minutes=1))
def refresh(session: Session, payload: Mapping[str, object]) -> None:
    """Count today and yesterday again, keep the settled days, store the snapshot the
    dashboard reads (in the job's own transaction, committed with its completion)."""
    summary = service.refresh(session, now=clock.now())
    log.debug("overview refreshed: %d customers, %d events", summary.customers, summary.events)
