"""`regulars simulate`: move the demo store forward in simulated time, a step (an hour by
default) at a time, so every journey has runs in flight, finished and held out.

A step at moment `at`, with the clock frozen there (`at_moment`):

1. `step` (one transaction, the caller's session): customers react to what was delivered in
   the step before (open, click, one-click unsubscribe; a click on an offer brings a visit, on a
   checkout reminder often the order); the step's activity (`activity.Store.hour`) is ingested
   from the "demo" source in two waves; once per run, customers give their birthday (an
   identify), and a service alert and a new collection are started through the journeys
   service, one run per customer as `POST /api/journeys/{key}/runs` would.
2. `settle`: the worker's rounds at `at` (journey runs, deliveries to the sandbox, the segment
   sweep, calendar triggers) until nothing is left to do, each in its own transactions.

The same seed gives the same store: activity is drawn from the seed, and ids from a generator
seeded with it (`kit.ids.repeatable`), so even the holdout draws repeat.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from regulars.customers import service as customers
from regulars.customers.schemas import CustomerQuery, CustomerRead
from regulars.demo import activity
from regulars.demo.generator import Message
from regulars.errors import Conflict
from regulars.identity import service as identity
from regulars.jobs import service as jobs
from regulars.journeys import service as journeys
from regulars.journeys.schemas import RunCreate
from regulars.kit import clock, ids
from regulars.messages import service as messages
from regulars.segments import service as segments
from regulars.worker import Worker

SOURCE_NAME = "demo"
MAX_ROUNDS = 200  # worker rounds per step: a bound, never reached in practice
LOOKBACK = timedelta(days=60)  # orders found again after a restart: what follows is planned
RFM_EVERY = timedelta(days=1)  # instead of REGULARS_RFM_REFRESH_MINUTES: hourly costs too much
ALERT = {
    "headline": "Deliveries delayed by the postal strike",
    "message": "Parcels sent this week may arrive two or three days late. Your coffee is "
    "roasted and packed; nothing is lost, and there is nothing you need to do.",
    "url": "https://lantern.example/news/strike",
    "headline_de": "Lieferungen verzögern sich wegen des Poststreiks",
    "message_de": "Pakete aus dieser Woche können zwei bis drei Tage später ankommen. Dein "
    "Kaffee ist geröstet und verpackt; es geht nichts verloren, und du musst nichts tun.",
}
COLLECTION = {
    "collection": "The Brew Bar gear collection",
    "url": "https://lantern.example/gear/brew-bar",
    "collection_de": "Die Brew-Bar-Kollektion",
}
COLLECTION_AUDIENCE = "gear-buyers-lapsed"  # one of demo.service.DEMO_SEGMENTS
# (P(open), P(click), P(unsubscribe)) by channel; opens are only seen in email
REACTIONS = {
    "email": (0.45, 0.10, 0.012),
    "push": (0.0, 0.09, 0.0),
    "inapp": (0.0, 0.12, 0.0),
    "sms": (0.0, 0.05, 0.0),
    "whatsapp": (0.0, 0.07, 0.0),
}


@dataclass
class Simulation:
    """A simulation under way: the store's customers and plans, and where it has got to."""

    seed: int
    start: datetime
    end: datetime
    step: timedelta
    store: activity.Store
    customer_ids: dict[str, str]  # user id -> customer id
    previous: datetime  # the moment of the step before
    birthdays: list[str] = field(default_factory=list)  # user ids yet to give theirs
    alert_at: datetime | None = None
    collection_at: datetime | None = None
    source: str | None = None  # the "demo" source's id, once known

    def moments(self) -> Iterator[datetime]:
        """The steps' moments: every `step` from the start, and the end."""
        at = self.start + self.step
        while at < self.end:
            yield at
            at += self.step
        yield self.end


@dataclass(slots=True)
class StepReport:
    events: int = 0
    rejected: int = 0
    signed_up: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    alerted: int = 0
    announced: int = 0


@dataclass(frozen=True, slots=True)
class JourneyTotals:
    key: str
    runs: int
    waiting: int
    active: int
    completed: int
    exited: int
    control: int  # exited as the holdout's control group
    messages: int
    goal: bool  # whether the journey has a goal: conversions count it
    conversions: int
    revenue: float


def begin(
    session: Session, *, seed: int, days: float, step: timedelta, now: datetime
) -> Simulation:
    """A simulation of `days` from the later of `now` and the minute after the newest event.
    Reads the customers, and plans again what follows the orders and checkouts it finds."""
    profiles = _profiles(session)
    seen = [p.facts.last_seen_at for p in profiles if p.facts.last_seen_at is not None]
    newest = max(seen, default=None)
    after = newest + timedelta(minutes=1) if newest is not None else now
    start = max(now, after).replace(second=0, microsecond=0)
    known = sorted((p for p in profiles if p.external_id), key=lambda p: str(p.external_id))
    shoppers = [
        activity.shopper(
            seed,
            str(p.external_id),
            anonymous_id=min(p.anonymous_ids, default=None),
            timezone=p.timezone,
            locale=p.locale,
        )
        for p in known
    ]
    taken = {value for p in profiles for value in (p.email, p.phone) if value}
    simulation = Simulation(
        seed=seed,
        start=start,
        end=start + timedelta(days=days),
        step=step,
        store=activity.Store(seed, shoppers, taken=taken),
        customer_ids={str(p.external_id): p.id for p in known},
        previous=start,
        birthdays=[str(p.external_id) for p in known if "birthday" not in p.traits],
        alert_at=start + timedelta(days=days * 0.25),
        collection_at=start + timedelta(days=days * 0.6),
    )
    if newest is not None:
        _plan_again(session, simulation, since=newest)
    return simulation


def _profiles(session: Session) -> list[CustomerRead]:
    found: list[CustomerRead] = []
    cursor = None
    while True:
        page = customers.list_customers(session, CustomerQuery(), cursor=cursor, limit=1000)
        found += page.items
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def _plan_again(session: Session, simulation: Simulation, *, since: datetime) -> None:
    """What a simulation before this one planned and did not get to: the steps after `since`
    of the orders it made, and the checkouts still open."""
    users = {c: u for u, c in simulation.customer_ids.items()}
    ids_ = sorted(users)
    orders = customers.recent_events(session, ids_, name="Order Completed", since=since - LOOKBACK)
    paid = set()
    for customer_id, event in sorted(orders, key=lambda found: found[1].timestamp):
        if "fulfillment" in event.properties and customer_id in users:
            simulation.store.replan(
                users[customer_id], event.properties, event.timestamp, since=since
            )
            paid.add(event.properties.get("checkout_id"))
    checkouts = customers.recent_events(
        session, ids_, name="Checkout Started", since=since - timedelta(days=3)
    )
    for customer_id, event in sorted(checkouts, key=lambda found: found[1].timestamp):
        checkout_id = event.properties.get("checkout_id")
        if checkout_id and checkout_id not in paid and customer_id in users:
            simulation.store.reopen(
                users[customer_id], event.properties, event.timestamp, since=since
            )


@contextmanager
def at_moment(simulation: Simulation, at: datetime) -> Iterator[None]:
    """The clock frozen at `at`, and ids drawn from the seed and `at`."""
    seed = f"{simulation.seed}/{simulation.start.isoformat()}/{at.isoformat()}"
    with clock.frozen(at), ids.repeatable(seed):
        yield


def step(session: Session, simulation: Simulation, *, at: datetime) -> StepReport:
    """One step up to `at` (the clock stands there); flushes, never commits."""
    since, stamp = simulation.previous, f"{at:%Y%m%dT%H%M}"
    report = StepReport()
    first: list[Message] = _birthdays(simulation, since)
    second: list[Message] = []
    for reaction in _react(session, simulation, since, at, stamp, report):
        first += reaction.first
        second += reaction.second
    hour = simulation.store.hour(since, at, stamp)
    report.signed_up = len(hour.signed_up)
    if simulation.source is None:
        simulation.source = identity.get_or_create_source(session, SOURCE_NAME).id
    for wave in (first + hour.first, second + hour.second):
        if wave:
            wave.sort(key=lambda m: str(m["timestamp"]))
            result = customers.ingest(session, wave, source=simulation.source, received_at=at)
            report.events += result.accepted
            report.rejected += len(result.rejected)
    for person in hour.signed_up:
        found = customers.find_by_identity(session, user_id=person.user_id, anonymous_id=None)
        if found is not None:
            simulation.customer_ids[person.user_id] = found
    _announce(session, simulation, at, report)
    simulation.previous = at
    return report


def _birthdays(simulation: Simulation, since: datetime) -> list[Message]:
    """Customers who never gave their birthday give it (once per run: the first step)."""
    found = []
    for user_id in simulation.birthdays:
        person = simulation.store.by_user.get(user_id)
        born = activity.birthday(simulation.seed, user_id)
        if person is not None and born is not None:
            message_id = f"sim:birthday:{user_id}"
            at = since + timedelta(seconds=1)
            found.append(activity.identify(person, at, message_id, {"birthday": born}))
    simulation.birthdays = []
    return found


def _react(
    session: Session,
    simulation: Simulation,
    since: datetime,
    until: datetime,
    stamp: str,
    report: StepReport,
) -> Iterator[activity.Hour]:
    """Reactions to what was delivered since the step before, each at a moment of its own."""
    users = {c: u for u, c in simulation.customer_ids.items()}
    delivered = customers.recent_events(
        session, sorted(users), name="message.delivered", since=since
    )
    for customer_id, event in sorted(
        delivered, key=lambda found: (found[1].timestamp, found[1].id)
    ):
        channel, template = event.properties.get("channel"), event.properties.get("template")
        user_id = users[customer_id]
        rng = random.Random(f"{simulation.seed}/{user_id}/{template}/{event.timestamp}")
        p_open, p_click, p_leave = REACTIONS.get(str(channel), (0.0, 0.0, 0.0))
        moment = since + (until - since) * rng.uniform(0.05, 0.7)
        delivery_id = str(event.properties["delivery_id"])
        draw, marketing = rng.random(), event.properties.get("category") == "marketing"
        with clock.frozen(moment):
            if draw < p_click:
                messages.feedback.clicked(session, delivery_id, "https://lantern.example/")
                report.clicked += 1
            elif draw < p_open:
                messages.feedback.opened(session, delivery_id)
                report.opened += 1
            elif marketing and draw > 1 - p_leave:
                messages.feedback.unsubscribe(session, delivery_id, source="one_click")
                report.unsubscribed += 1
        if draw < p_click and marketing:
            yield simulation.store.clicked(user_id, str(template), moment, until, stamp=stamp)


def _announce(session: Session, simulation: Simulation, at: datetime, report: StepReport) -> None:
    """Once per run: a service alert to customers with a parcel on the way, and a new gear
    collection to the lapsed gear shoppers (the journey picks those who looked at gear lately)."""
    if simulation.alert_at is not None and at >= simulation.alert_at:
        simulation.alert_at = None
        audience = [
            simulation.customer_ids[u]
            for u in simulation.store.parcels_on_the_way()
            if u in simulation.customer_ids
        ]
        report.alerted = _start_runs(session, "service-alert", audience, ALERT)
    if simulation.collection_at is not None and at >= simulation.collection_at:
        simulation.collection_at = None
        if segments.find(session, COLLECTION_AUDIENCE) is not None:
            audience = _members(session, COLLECTION_AUDIENCE)
        else:
            audience = sorted(simulation.customer_ids.values())
        report.announced = _start_runs(session, "new-collection", audience, COLLECTION)


def _members(session: Session, segment: str) -> list[str]:
    found: list[str] = []
    while batch := segments.member_ids_after(
        session, segment, after=found[-1] if found else None, limit=1000
    ):
        found += batch
    return found


def _start_runs(
    session: Session, key: str, customer_ids: Sequence[str], properties: dict[str, Any]
) -> int:
    """A run of the API-triggered journey `key` per customer, as POST /api/journeys/{key}/runs
    would; none when the journey is not live."""
    journey = journeys.get(session, key)
    if journey is None or journey.status != "live":
        return 0
    started = 0
    for customer_id in customer_ids:
        try:
            journeys.start_run(
                session, key, RunCreate(customer_id=customer_id, properties=properties)
            )
        except Conflict:  # the entry rules keep this customer out now: skip them
            continue
        started += 1
    return started


# --- the worker ---


def make_worker() -> Worker:
    """A worker with every task registered, refreshing RFM scores once a simulated day."""
    jobs.discover()
    registry = jobs.Registry()
    recurring = {s.kind: s for s in jobs.registry.schedules}
    for kind in jobs.registry.kinds:
        schedule = recurring.get(kind)
        every = schedule.every if schedule is not None else None
        every = RFM_EVERY if kind == "segments.refresh_rfm" else every
        in_steps = jobs.registry.steps_handler(kind)
        if in_steps is not None and every is not None:  # in steps: always every N minutes
            registry.recurring_in_steps(kind, every=every)(in_steps)
            continue
        handler = jobs.registry.handler(kind)
        if schedule is None:
            registry.task(kind)(handler)
            continue
        daily_at = None if every is not None else schedule.daily_at
        registry.recurring(kind, every=every, daily_at=daily_at, timezone=schedule.timezone)(
            handler
        )
    for queue in jobs.registry.queues:
        registry.queue(queue.name, has_work=queue.has_work)(queue.drain)
    return Worker(registry=registry, worker_id="simulate")


def settle(worker: Worker, *, at: datetime) -> int:
    """The worker's rounds at `at` until a round finds nothing to do; answer the work done."""
    done = 0
    for _ in range(MAX_ROUNDS):
        ran = worker.run_once(at)
        if not ran:
            break
        done += ran
    return done


# --- how the journeys are doing ---


def totals(session: Session) -> list[JourneyTotals]:
    """Runs by state, control runs, messages and conversions of every journey, by key."""
    found = []
    cursor = None
    while True:
        page = journeys.list_page(session, cursor=cursor, limit=100)
        for journey in page.items:
            stats = journeys.stats_of(session, journey.key)
            waiting = sum(node.waiting for node in stats.nodes)
            control = sum(arm.runs for arm in stats.arms if arm.variant == "control")
            found.append(
                JourneyTotals(
                    key=journey.key,
                    runs=stats.runs,
                    waiting=waiting,
                    active=stats.active - waiting,
                    completed=stats.completed,
                    exited=stats.exited,
                    control=control,
                    messages=sum(node.messages for node in stats.nodes),
                    goal="goal" in journey.draft,
                    conversions=stats.conversions,
                    revenue=stats.revenue,
                )
            )
        if page.next_cursor is None:
            return sorted(found, key=lambda t: t.key)
        cursor = page.next_cursor
