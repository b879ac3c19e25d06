"""Carry queued deliveries to their providers: claim, send, record.

A round is three steps, so no transaction stays open while a provider answers:
`claim` (one short transaction: due rows become `sending` under this worker's lease; those
whose address was suppressed or whose marketing consent was withdrawn while they waited are
set aside as suppressed), `deliver` (no database: each channel's batch goes to its first
provider, what fails with a timeout or 5xx fails over to the next one, a 4xx is final),
`record` (one transaction, in messages/outcomes.py: statuses, retries with backoff,
suppressions, timeline events, in-app inbox rows).

A worker killed between deliver and record leaves its rows `sending`; once the lease is
over they are claimed again. The provider may then see a message twice (at-least-once), and
email carries the same Message-ID both times, so mailbox providers fold the copies.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.customers import service as customers
from regulars.jobs import service as jobs
from regulars.messages import links, policy, providers, repository
from regulars.messages.channels import TRANSPORTS
from regulars.messages.channels.base import (
    Accepted,
    Outgoing,
    PermanentError,
    PushTarget,
    TransientError,
    Transport,
)
from regulars.messages.models import (
    Category,
    DeliveryStatus,
    MessageChannel,
)

LEASE = timedelta(minutes=5)
RATE_LIMITED_RETRY = timedelta(seconds=1)
SANDBOX = "sandbox"


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    name: str
    kind: str
    config: Mapping[str, Any]
    rate_per_second: float | None
    version: str  # changes when the provider's settings change: the transport is made anew


@dataclass(slots=True)
class Claimed:
    """A claimed delivery, copied out of the session that claimed it."""

    message: Outgoing
    attempts: int
    expires_at: datetime | None
    template: str | None
    broadcast: str | None = None


@dataclass(slots=True)
class Result:
    delivery_id: str
    status: DeliveryStatus
    provider: str | None = None
    provider_message_id: str | None = None
    reason: str | None = None
    next_attempt_at: datetime | None = None
    uncount_attempt: bool = False
    bounce: bool = False
    gone: bool = False


@dataclass
class Round:
    claimed: list[Claimed]
    chains: dict[MessageChannel, list[ProviderSpec]]
    # Deliveries a policy refuses now, though it let them through when they were queued:
    # delivery id -> reason. They are claimed (so recorded) but never handed over.
    refused: dict[str, str] = field(default_factory=dict)


# --- claim ---


def any_due(session: Session, *, now: datetime) -> bool:
    """Whether `claim` would find a delivery (a read: no write lock when not)."""
    return repository.any_due(session, now=now)


def claim(session: Session, *, worker_id: str, now: datetime, limit: int) -> Round:
    rows = repository.claim_due(
        session, now=now, limit=limit, worker_id=worker_id, locked_until=now + LEASE
    )
    push = _push_targets(session, [r for r in rows if r.channel == MessageChannel.PUSH])
    claimed = [
        Claimed(
            _outgoing(row, push.get(row.address or "")),
            row.attempts,
            row.expires_at,
            row.template_key,
            row.broadcast_id,
        )
        for row in rows
    ]
    chains = {channel: provider_chain(session, channel) for channel in {r.channel for r in rows}}
    return Round(claimed=claimed, chains=chains, refused=_refused_now(session, rows, now=now))


_SUPPRESSIBLE = (MessageChannel.EMAIL, MessageChannel.SMS, MessageChannel.WHATSAPP)
_NO_QUIET_HOURS = policy.QuietHours(time(0), time(0), frozenset(), transactional=False)


def _refused_now(session: Session, rows: Sequence[Row[Any]], *, now: datetime) -> dict[str, str]:
    """A delivery may wait hours (quiet hours, a broadcast's local time or throttle, retries)
    after send() let it through: an address suppressed meanwhile (a bounce, STOP) or
    marketing consent withdrawn or paused meanwhile stops it at the last moment."""
    suppressed = _suppressed(session, rows)
    marketing = sorted({r.customer_id for r in rows if r.category == Category.MARKETING})
    consents = customers.consent_statuses(session, marketing) if marketing else {}
    pauses = repository.pauses_of(session, marketing) if marketing else {}
    refused: dict[str, str] = {}
    for row in rows:
        facts = policy.PolicyInput(
            category=Category(row.category),
            channel=MessageChannel(row.channel),
            topic=row.topic,
            now=now,
            expires_at=None,
            timezone=None,
            consents=consents.get(row.customer_id, {}),
            suppressed_reason=suppressed.get((row.channel, row.address or "")),
            address=row.address,
            paused_until=pauses.get(row.customer_id),
            recent_marketing=(),
            caps=(),
            quiet=_NO_QUIET_HOURS,
            default_timezone="UTC",
        )
        verdict = policy.check_suppression(facts) or policy.check_consent(facts)
        if verdict is not None:
            refused[row.id] = f"{verdict.reason}: {verdict.message}"
    return refused


def _suppressed(
    session: Session, rows: Sequence[Row[Any]]
) -> dict[tuple[MessageChannel, str], str]:
    found: dict[tuple[MessageChannel, str], str] = {}
    for channel in _SUPPRESSIBLE:
        addresses = {r.address for r in rows if r.channel == channel and r.address}
        if addresses:
            reasons = repository.suppressions_for(session, channel, addresses)
            found.update(((channel, address), why) for address, why in reasons.items())
    return found


def _push_targets(session: Session, rows: Sequence[Row[Any]]) -> dict[str, PushTarget]:
    subscriptions = repository.push_subscriptions_of(session, {r.customer_id for r in rows})
    return {
        s.endpoint: PushTarget(s.endpoint, s.p256dh, s.auth)
        for found in subscriptions.values()
        for s in found
    }


def _outgoing(row: Row[Any], push: PushTarget | None) -> Outgoing:
    headers: dict[str, str] = {}
    if row.channel == MessageChannel.EMAIL and row.category == Category.MARKETING:
        # RFC 8058: a POST to the https URL unsubscribes at once; mailto for older clients.
        headers["List-Unsubscribe"] = (
            f"<{links.unsubscribe_url(row.id)}>, <{links.unsubscribe_mailto(row.id)}>"
        )
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return Outgoing(
        delivery_id=row.id,
        channel=MessageChannel(row.channel),
        category=Category(row.category),
        customer_id=row.customer_id,
        address=row.address or "",
        content=dict(row.content),
        headers=headers,
        push=push,
    )


def provider_chain(session: Session, channel: MessageChannel) -> list[ProviderSpec]:
    """The channel's enabled providers by priority: the fail-over order. None configured at
    all: the sandbox, which keeps what would have been sent. Providers configured but all
    disabled: an empty chain, so messages wait (retries) instead of vanishing in a sandbox."""
    configured = repository.channel_providers(session, channel)
    if not configured:
        return [ProviderSpec(SANDBOX, SANDBOX, {}, None, "")]
    return [_spec(p.name, p.kind, p.config, p.rate_per_second) for p in configured if p.enabled]


def _spec(name: str, kind: str, config: Mapping[str, Any], rate: float | None) -> ProviderSpec:
    filled = providers.effective_config(name, kind, config)
    # The version is what the transport is made of, not when the row changed: two saves
    # within one clock reading (a frozen clock, a coarse one) still make a new transport.
    version = json.dumps([kind, filled], sort_keys=True, default=str)
    return ProviderSpec(name, kind, filled, rate, version)


# --- deliver: no database here ---


_transports: dict[tuple[int, str], tuple[str, Transport]] = {}
_transports_lock = threading.Lock()


def transport_for(spec: ProviderSpec) -> Transport:
    """One transport per provider and thread, kept across rounds (SMTP connections stay
    open); made anew when the provider's settings change."""
    key = (threading.get_ident(), spec.name)
    with _transports_lock:
        found = _transports.get(key)
    if found is not None and found[0] == spec.version:
        return found[1]
    if found is not None:
        found[1].close()
    transport = TRANSPORTS[spec.kind](spec.config)
    with _transports_lock:
        _transports[key] = (spec.version, transport)
    return transport


def close_transports() -> None:
    with _transports_lock:
        found = list(_transports.values())
        _transports.clear()
    for _version, transport in found:
        transport.close()


class RateLimiter:
    """A token bucket per provider (per process): at most `rate` messages a second, bursts
    up to one second's worth (one message for a rate below one a second, which would
    otherwise never fill a whole token). Time comes from the caller, so tests move it."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, datetime]] = {}
        self._lock = threading.Lock()

    def take(self, name: str, rate: float | None, wanted: int, now: datetime) -> int:
        if rate is None:
            return wanted
        burst = max(rate, 1.0)
        with self._lock:
            tokens, at = self._buckets.get(name, (burst, now))
            tokens = min(burst, tokens + max((now - at).total_seconds(), 0.0) * rate)
            granted = min(wanted, int(tokens))
            self._buckets[name] = (tokens - granted, now)
        return granted


limiter = RateLimiter()


def deliver(work: Round, *, now: datetime) -> list[Result]:
    """Send every claimed message through its channel's providers; one result each."""
    results: list[Result] = []
    live: dict[MessageChannel, list[Claimed]] = {}
    for item in work.claimed:
        refusal = work.refused.get(item.message.delivery_id)
        if refusal is not None:
            results.append(
                Result(item.message.delivery_id, DeliveryStatus.SUPPRESSED, None, None, refusal)
            )
        elif item.expires_at is not None and item.expires_at <= now:
            results.append(_expired(item))
        elif item.attempts > get_settings().delivery_max_attempts:
            # Claimed again and again without an outcome: it stops its worker every time.
            reason = f"gave up after {item.attempts - 1} attempts: no outcome was recorded"
            results.append(Result(item.message.delivery_id, DeliveryStatus.FAILED, reason=reason))
        else:
            live.setdefault(item.message.channel, []).append(item)
    for channel, items in live.items():
        results.extend(_through_chain(items, work.chains[channel], now=now))
    return results


def _expired(item: Claimed) -> Result:
    return Result(item.message.delivery_id, DeliveryStatus.EXPIRED, reason="expired: not sent")


def _through_chain(
    items: list[Claimed], chain: Sequence[ProviderSpec], *, now: datetime
) -> list[Result]:
    results: list[Result] = []
    pending = items
    errors = {
        item.message.delivery_id: "every provider of the channel is disabled" for item in items
    }
    for spec in chain:
        if not pending:
            break
        granted = limiter.take(spec.name, spec.rate_per_second, len(pending), now)
        batch, held = pending[:granted], pending[granted:]
        results.extend(_held(item, now) for item in held)
        pending = []
        outcomes = _send(spec, [item.message for item in batch])
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, TransientError):
                errors[item.message.delivery_id] = f"{spec.name}: {outcome.detail}"
                pending.append(item)  # fail over to the next provider
            else:
                results.append(_final(item, spec.name, outcome))
    results.extend(_retry(item, errors[item.message.delivery_id], now) for item in pending)
    return results


def _send(spec: ProviderSpec, messages: list[Outgoing]) -> list[Any]:
    if not messages:
        return []
    try:
        outcomes = transport_for(spec).send_many(messages)
    except Exception as exc:  # a transport bug or bad config: every message may go elsewhere
        return [TransientError(f"{type(exc).__name__}: {exc}") for _ in messages]
    return list(outcomes)


def _held(item: Claimed, now: datetime) -> Result:
    return Result(
        item.message.delivery_id,
        DeliveryStatus.QUEUED,
        next_attempt_at=now + RATE_LIMITED_RETRY,
        uncount_attempt=True,
    )


def _final(item: Claimed, provider: str, outcome: Accepted | PermanentError) -> Result:
    delivery_id = item.message.delivery_id
    if isinstance(outcome, Accepted):
        return Result(delivery_id, outcome.status, provider, outcome.provider_message_id)
    status = DeliveryStatus.BOUNCED if outcome.bounce else DeliveryStatus.FAILED
    return Result(
        delivery_id,
        status,
        provider,
        reason=f"{provider}: {outcome.detail}",
        bounce=outcome.bounce,
        gone=outcome.gone,
    )


def _retry(item: Claimed, error: str, now: datetime) -> Result:
    """Every provider failed for now: try again after a backoff, or give up."""
    if item.attempts >= get_settings().delivery_max_attempts:
        return Result(
            item.message.delivery_id,
            DeliveryStatus.FAILED,
            reason=f"gave up after {item.attempts} attempts; last: {error}",
        )
    return Result(
        item.message.delivery_id,
        DeliveryStatus.DEFERRED,
        reason=f"retry: {error}",
        next_attempt_at=now + jobs.backoff(item.attempts),
    )
