"""Triggers that fire by the calendar rather than by an event: a whole segment at a set
time (`schedule`), and each customer's yearly date such as a birthday (`anniversary`).

The worker calls `enroll_scheduled` every minute. A schedule fires once per moment: the
journey remembers the moment it enrolled up to (`enrolled_until`). Anniversaries are looked
for once an hour: the customers whose date comes up on their own local day, each started at
`at` on their clock, one run per customer and year.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from regulars.customers import service as customers
from regulars.journeys import catalog, repository
from regulars.journeys.catalog import Version
from regulars.journeys.definition import AnniversaryTrigger, ScheduleTrigger
from regulars.journeys.enrollment import Entrant, enroll, trigger_of
from regulars.journeys.nodes import lookup
from regulars.kit.zones import zone_or_utc
from regulars.segments import service as segments

PAGE = 5000
ANNIVERSARY_EVERY = timedelta(hours=1)


def enroll_scheduled(session: Session, *, now: datetime) -> int:
    """Fire every schedule and anniversary trigger that is due; answer the runs started."""
    started = 0
    for version in catalog.current(session).live:
        trigger = version.graph.definition.trigger
        if not version.accepting:
            continue
        if isinstance(trigger, ScheduleTrigger):
            started += _fire_schedule(session, version, trigger, now=now)
        elif isinstance(trigger, AnniversaryTrigger):
            started += _fire_anniversaries(session, version, trigger, now=now)
    return started


def latest_moment(trigger: ScheduleTrigger, now: datetime) -> datetime | None:
    """The last moment at or before `now` the schedule names."""
    if trigger.at is not None:
        return trigger.at if trigger.at <= now else None
    assert trigger.daily_at is not None
    zone = zone_or_utc(trigger.timezone)
    today = now.astimezone(zone).date()
    for day in (today, today - timedelta(days=1)):
        moment = datetime.combine(day, trigger.daily_at, tzinfo=zone)
        if moment <= now:
            return moment
    return None  # unreachable: yesterday's moment has always passed


def _fire_schedule(
    session: Session, version: Version, trigger: ScheduleTrigger, *, now: datetime
) -> int:
    journey = repository.get(session, version.journey_id)
    moment = latest_moment(trigger, now)
    if journey is None or moment is None:
        return 0
    if journey.enrolled_until is not None and moment <= journey.enrolled_until:
        return 0
    journey.enrolled_until = now
    data = trigger_of("schedule", {"segment": trigger.segment}, moment)
    started, after = 0, None
    while True:
        ids = segments.member_ids_after(session, trigger.segment, after=after, limit=PAGE)
        if not ids:
            return started
        started += enroll(session, version, [Entrant(c, data, now) for c in ids], now=now)
        after = ids[-1]


def _fire_anniversaries(
    session: Session, version: Version, trigger: AnniversaryTrigger, *, now: datetime
) -> int:
    journey = repository.get(session, version.journey_id)
    if journey is None:
        return 0
    if journey.enrolled_until is not None and now - journey.enrolled_until < ANNIVERSARY_EVERY:
        return 0
    journey.enrolled_until = now
    # A small superset from SQL (dates within the next days_before + 1 days), then the exact
    # local day per customer here.
    rule = {
        "type": "profile",
        "field": f"traits.{trigger.trait}",
        "op": "anniversary_within",
        "value": {"amount": trigger.days_before + 1, "unit": "days"},
    }
    candidates = segments.matching_ids(session, rule, now=now)
    entrants = []
    for start in range(0, len(candidates), PAGE):
        profiles = customers.recipients(session, candidates[start : start + PAGE])
        for profile in profiles.values():
            entrant = _anniversary_entrant(
                trigger, profile.id, profile.traits, profile.timezone, now
            )
            if entrant is not None:
                entrants.append(entrant)
    return enroll(session, version, entrants, now=now)


def _anniversary_entrant(
    trigger: AnniversaryTrigger,
    customer_id: str,
    traits: dict[str, Any],
    timezone: str | None,
    now: datetime,
) -> Entrant | None:
    value = lookup(traits, trigger.trait)
    zone = zone_or_utc(timezone)
    today = now.astimezone(zone).date()
    target = today + timedelta(days=trigger.days_before)
    if not segments.anniversary_falls_on(value, target):
        return None
    assert isinstance(value, str)
    data = trigger_of("anniversary", {trigger.trait: value[:10], "year": target.year}, now)
    starts_at = datetime.combine(today, trigger.at, tzinfo=zone)
    return Entrant(customer_id, data, starts_at, once_key=f"{customer_id}|{target.year}")
