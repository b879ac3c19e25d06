"""Record what happened to a round of deliveries, in one transaction: statuses, retries,
timeline events, suppressions after bounces, expired push subscriptions removed, in-app inbox
rows, and broadcasts cancelled meanwhile. The third step of a worker round
(messages/dispatch.py claims and delivers)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from regulars.customers import service as customers
from regulars.kit import ids
from regulars.messages import repository
from regulars.messages.dispatch import Claimed, Result, Round
from regulars.messages.models import DeliveryStatus, MessageChannel
from regulars.messages.sending import timeline_event


def record(
    session: Session, work: Round, results: Sequence[Result], *, worker_id: str, now: datetime
) -> int:
    """Write what happened, in one transaction; rows whose lease this worker lost are left
    to their new owner. Answers how many were recorded."""
    held = repository.still_claimed(session, [r.delivery_id for r in results], worker_id=worker_id)
    results = [r for r in results if r.delivery_id in held]
    by_id = {c.message.delivery_id: c for c in work.claimed}
    repository.save_outcomes(session, [_outcome_row(r, by_id[r.delivery_id], now) for r in results])
    customers.record_system_events(session, _events(results, by_id, now))
    _suppress(session, results, by_id, now)
    repository.delete_push_subscriptions(
        session, {by_id[r.delivery_id].message.address for r in results if r.gone}
    )
    repository.add_inbox_messages(session, _inbox_rows(results, by_id, now))
    _cancel_if_broadcast_cancelled(session, results, by_id, now)
    return len(results)


def _cancel_if_broadcast_cancelled(
    session: Session, results: Sequence[Result], by_id: Mapping[str, Claimed], now: datetime
) -> None:
    """A broadcast cancelled while some of its messages were with a provider: those that
    failed for now (or were held by a rate limit) are cancelled, not retried."""
    waiting = {
        by_id[r.delivery_id].broadcast
        for r in results
        if r.status in (DeliveryStatus.DEFERRED, DeliveryStatus.QUEUED)
    }
    for broadcast_id in repository.cancelled_broadcasts(session, waiting - {None}):
        repository.cancel_pending(session, broadcast_id=broadcast_id, now=now)


def _outcome_row(result: Result, item: Claimed, now: datetime) -> dict[str, Any]:
    sent = result.status in (DeliveryStatus.SENT, DeliveryStatus.DELIVERED)
    return {
        "id": result.delivery_id,
        "status": result.status,
        "reason": result.reason,
        "provider": result.provider,
        "provider_message_id": result.provider_message_id,
        "next_attempt_at": result.next_attempt_at,
        "attempts": item.attempts - 1 if result.uncount_attempt else item.attempts,
        "locked_by": None,
        "locked_until": None,
        "updated_at": now,
        "sent_at": now if sent else None,
        "delivered_at": now if result.status == DeliveryStatus.DELIVERED else None,
    }


def _events(
    results: Sequence[Result], by_id: Mapping[str, Claimed], now: datetime
) -> list[customers.SystemEvent]:
    events = []
    for result in results:
        if result.uncount_attempt:
            continue  # held back by a rate limit: nothing happened to the customer yet
        item = by_id[result.delivery_id]
        if result.status == DeliveryStatus.DELIVERED:  # sandbox, in-app: sent and delivered
            events.append(_event(result, item, DeliveryStatus.SENT, now))
        events.append(_event(result, item, result.status, now))
    return events


def _event(
    result: Result, item: Claimed, status: DeliveryStatus, now: datetime
) -> customers.SystemEvent:
    message = item.message
    event = timeline_event(
        {
            "id": message.delivery_id,
            "customer_id": message.customer_id,
            "channel": message.channel,
            "category": message.category,
            "template_key": item.template,
            "status": status,
            "reason": result.reason,
            "updated_at": now,
        }
    )
    if status != DeliveryStatus.DEFERRED:
        return event
    # A delivery may be retried several times: one event per attempt.
    return dataclasses.replace(event, key=f"{event.key}:{item.attempts}")


def _suppress(
    session: Session, results: Sequence[Result], by_id: Mapping[str, Claimed], now: datetime
) -> None:
    rows = [
        {
            "channel": by_id[r.delivery_id].message.channel,
            "address": by_id[r.delivery_id].message.address,
            "reason": "hard_bounce",
            "delivery_id": r.delivery_id,
            "created_at": now,
        }
        for r in results
        if r.bounce and by_id[r.delivery_id].message.address
    ]
    repository.add_suppressions(session, rows)


def _inbox_rows(
    results: Sequence[Result], by_id: Mapping[str, Claimed], now: datetime
) -> list[dict[str, Any]]:
    rows = []
    for result in results:
        message = by_id[result.delivery_id].message
        if message.channel != MessageChannel.INAPP or result.status != DeliveryStatus.DELIVERED:
            continue
        rows.append(
            {
                "id": ids.new_id(),
                "customer_id": message.customer_id,
                "delivery_id": message.delivery_id,
                "title": str(message.content.get("title", "")),
                "body": str(message.content.get("body", "")),
                "link": message.content.get("link") or None,
                "created_at": now,
                "read_at": None,
            }
        )
    return rows
