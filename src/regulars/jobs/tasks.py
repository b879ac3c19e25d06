"""The jobs domain's own recurring work: keep the queue table small."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import time

from sqlalchemy.orm import Session

from regulars.jobs import service
from regulars.kit import clock

log = logging.getLogger(__name__)


@service.recurring("jobs.prune", daily_at=time(3, 0), timezone="UTC")
def prune(session: Session, payload: Mapping[str, object]) -> None:
    """Delete done and failed jobs that finished more than seven days ago."""
    deleted = service.prune(session, now=clock.now())
    log.info("pruned %d finished jobs", deleted)
