"""The worker's side of journeys: the runs queue, calendar triggers and webhook calls."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

import httpx
import orjson
from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.db import session_scope
from regulars.jobs import service as jobs
from regulars.journeys import service
from regulars.journeys.enrollment import RUNS_QUEUE
from regulars.journeys.execution import WEBHOOK_JOB
from regulars.kit import clock
from regulars.kit.webhooks import is_transient, sign
from regulars.messages import service as messages

log = logging.getLogger(__name__)


@jobs.queue(RUNS_QUEUE, has_work=service.any_due)
def advance_runs(worker_id: str, now: datetime, limit: int) -> int:
    """One round: claim due runs and move them along, all in one transaction. When the
    batch fails, its runs go one by one, so one bad run cannot hold up the others."""
    batch = get_settings().journey_batch_size
    try:
        with session_scope() as session:
            executed = service.advance_due(session, now=now, limit=batch)
            deliveries = messages.claim_queued_deliveries(session, worker_id=worker_id, now=now)
        if deliveries is not None:
            messages.hand_over_deliveries(worker_id, deliveries)
        return executed
    except Exception:  # isolate the failing run below; the error is logged there
        log.warning("a batch of journey runs failed; moving them one by one", exc_info=True)
    return _one_by_one(now, batch)


def _one_by_one(now: datetime, limit: int) -> int:
    with session_scope() as session:
        due = service.due_run_ids(session, now=now, limit=limit)
    executed = 0
    for run_id in due:
        try:
            with session_scope() as session:
                executed += service.advance_due(session, now=now, limit=1, run_ids=[run_id])
        except Exception as exc:  # record it on the run, retry later, go on with the rest
            log.exception("journey run %s failed", run_id)
            with session_scope() as session:
                service.record_run_failure(
                    session, run_id, error=f"{type(exc).__name__}: {exc}", now=now
                )
    return executed


@jobs.recurring("journeys.schedules", every=timedelta(minutes=1))
def enroll_scheduled(session: Session, payload: Mapping[str, object]) -> None:
    """Fire schedule and anniversary triggers that are due."""
    started = service.enroll_scheduled(session, now=clock.now())
    if started:
        log.info("calendar triggers started %d journey runs", started)


class WebhookFailed(Exception):
    """A transient failure (timeout, 408, 429, 5xx): the job system retries with backoff."""


@jobs.task(WEBHOOK_JOB)
def call_webhook(session: Session, payload: Mapping[str, object]) -> None:
    """POST a journey webhook node's call, signed as docs/journeys.md describes."""
    body = orjson.dumps(
        {
            "run_id": payload["run_id"],
            "journey_id": payload["journey_id"],
            "customer_id": payload["customer_id"],
            "trigger": payload["trigger"],
            "data": payload["body"],
        }
    )
    timestamp = str(int(clock.now().timestamp()))
    headers = {
        "Content-Type": "application/json",
        "X-Regulars-Run": str(payload["run_id"]),
        "X-Regulars-Timestamp": timestamp,
        "X-Regulars-Signature": sign(service.webhook_secret(), timestamp, body),
    }
    try:
        response = httpx.post(
            str(payload["url"]),
            content=body,
            headers=headers,
            timeout=get_settings().journey_webhook_timeout,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        raise WebhookFailed(f"{payload['url']}: {exc}") from exc
    if is_transient(response.status_code):
        raise WebhookFailed(f"{payload['url']} answered {response.status_code}")
    if response.status_code >= 300:
        log.warning("journey webhook %s refused: %d", payload["url"], response.status_code)
