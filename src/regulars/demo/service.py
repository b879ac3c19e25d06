"""Load the demo store into the database through the same `ingest` every other message takes."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy.orm import Session

from regulars.customers import service as customers_service
from regulars.customers.rules import order_amount_cents
from regulars.customers.schemas import CustomerQuery
from regulars.demo import activity
from regulars.demo import messages as demo_messages
from regulars.demo.generator import Message, generate
from regulars.errors import Conflict
from regulars.identity import service as identity
from regulars.identity import staff
from regulars.identity.models import ApiKeyScope, Role, Source
from regulars.journeys import blueprints
from regulars.journeys import service as journeys
from regulars.kit import clock, ids
from regulars.segments import service as segments_service
from regulars.segments.schemas import SegmentCreate

SOURCE_NAME = "demo"
CHUNK = 2000
CONFIRMED_ORDERS = 40


@dataclass(slots=True)
class DemoSummary:
    customers: int = 0
    events: int = 0
    duplicates: int = 0
    rejected: int = 0
    orders: int = 0
    revenue_cents: int = 0
    source: Source | None = None
    api_key: str | None = None
    segments: dict[str, int] = field(default_factory=dict)
    messages: demo_messages.MessagesSummary | None = None
    journeys: list[str] = field(default_factory=list)  # the blueprints installed
    staff: list[tuple[str, Role]] = field(default_factory=list)  # (email, role)
    latest_orders: list[demo_messages.Order] = field(default_factory=list)
    _users: set[str] = field(default_factory=set)

    def count(self, message: Message) -> None:
        if "userId" in message:
            self._users.add(str(message["userId"]))
            self.customers = len(self._users)
        if message["type"] == "track" and message.get("event") == "Order Completed":
            self.orders += 1
            self.revenue_cents += order_amount_cents(message["properties"])
            self._keep_latest(message)

    def _keep_latest(self, message: Message) -> None:
        """The newest orders of known customers get confirmations sent in the demo."""
        if "userId" not in message:
            return
        at = datetime.fromisoformat(str(message["timestamp"]).replace("Z", "+00:00"))
        order = (at, str(message["userId"]), dict(message["properties"]))
        heapq.heappush(self.latest_orders, order)
        if len(self.latest_orders) > CONFIRMED_ORDERS:
            heapq.heappop(self.latest_orders)


def load(
    session: Session,
    *,
    seed: int,
    customers: int,
    months: int,
    now: datetime,
    force: bool = False,
) -> DemoSummary:
    """Generate the demo store and ingest it from the "demo" source; flushes, never commits.

    Creates the "demo" source when missing and a new admin API key, both returned in the
    summary, then the segments, the templates and messages (`install_journeys` adds the
    journeys). A database with customers in it is refused unless `force`. In an empty
    database ids are drawn from the seed too: under a frozen clock, the same store twice.
    """
    loaded = has_customers(session)
    if loaded and not force:
        raise Conflict("the database has customers already; pass --force to load the demo anyway")
    fresh = ids.repeatable(f"demo/{seed}/{now.isoformat()}") if not loaded else nullcontext()
    with fresh:
        return _load(session, seed=seed, customers=customers, months=months, now=now)


def _load(
    session: Session, *, seed: int, customers: int, months: int, now: datetime
) -> DemoSummary:
    source = identity.get_or_create_source(session, SOURCE_NAME)
    summary = DemoSummary(source=source)
    _, summary.api_key = identity.create_api_key(session, "demo admin", ApiKeyScope.ADMIN)
    summary.staff = create_staff(session)
    messages = generate(seed, customers=customers, months=months, now=now)
    for chunk in _chunks(_counted(_with_birthdays(messages, seed), summary), CHUNK):
        result = customers_service.ingest(session, chunk, source=source.id, received_at=now)
        summary.events += result.accepted
        summary.duplicates += result.duplicates
        summary.rejected += len(result.rejected)
    customers_service.refresh_rfm(session, now=now)
    summary.segments = install_segments(session, now=now)
    summary.messages = demo_messages.load(session, seed=seed, now=now, orders=summary.latest_orders)
    return summary


# One dashboard user per role, all with this password: the demo is for looking around.
DEMO_STAFF_PASSWORD = "regulars-demo"
DEMO_STAFF = (
    (Role.OWNER, "Olivia Owner"),
    (Role.ADMIN, "Adam Admin"),
    (Role.MARKETER, "Maya Marketer"),
    (Role.AGENT, "Arjun Agent"),
    (Role.ANALYST, "Ana Analyst"),
)


def staff_email(role: Role) -> str:
    return f"{role.value}@demo.regulars.dev"


def create_staff(session: Session) -> list[tuple[str, Role]]:
    """The demo's staff users, created when missing (`make run` prints how to sign in)."""
    for role, name in DEMO_STAFF:
        staff.ensure_user(
            session, staff_email(role), name=name, role=role, password=DEMO_STAFF_PASSWORD
        )
    return [(staff_email(role), role) for role, _name in DEMO_STAFF]


def install_journeys(session: Session) -> list[str]:
    """Install and publish every shipped blueprint not installed yet (templates the demo
    saved before are kept); answer the keys installed. Ids are drawn from the clock's moment:
    under a frozen clock, the same journeys (and so the same journey runs) twice."""
    installed = []
    with ids.repeatable(f"blueprints/{clock.now().isoformat()}"):
        for key in blueprints.names():
            if journeys.get(session, key) is None:
                journeys.install_blueprint(session, key)
                installed.append(key)
    return installed


# A handful of segments a coffee store would make on its first day, beside the built-in ones.
DEMO_SEGMENTS: tuple[dict[str, Any], ...] = (
    {
        "key": "cart-abandoners",
        "name": "Cart abandoners",
        "description": "Started a checkout in the last 30 days and did not order within 1 hour.",
        "rule": {
            "type": "absence",
            "name": "Checkout Started",
            "then_not": {"name": "Order Completed"},
            "within": {"amount": 1, "unit": "hours"},
            "window": {"last": {"amount": 30, "unit": "days"}},
        },
    },
    {
        "key": "vips-london",
        "name": "VIPs in London",
        "description": "Lives in London and has spent 150 or more.",
        "rule": {
            "type": "and",
            "rules": [
                {"type": "profile", "field": "traits.city", "op": "equals", "value": "London"},
                {"type": "fact", "field": "revenue_total", "op": "gte", "value": 150},
            ],
        },
    },
    {
        "key": "gear-buyers-lapsed",
        "name": "Gear shoppers, no order in 60 days",
        "description": "Added brewing gear to a cart, has ordered, but not in the last 60 days.",
        "rule": {
            "type": "and",
            "rules": [
                {
                    "type": "event",
                    "name": "Product Added",
                    "where": [{"property": "category", "op": "equals", "value": "gear"}],
                },
                {"type": "fact", "field": "orders_count", "op": "gte", "value": 1},
                {
                    "type": "fact",
                    "field": "last_order_at",
                    "op": "not_within_last",
                    "value": {"amount": 60, "unit": "days"},
                },
            ],
        },
    },
    {
        "key": "newsletter-subscribers",
        "name": "Newsletter subscribers",
        "description": "Subscribed to email and to the newsletter topic.",
        "rule": {
            "type": "and",
            "rules": [
                {"type": "consent", "channel": "email", "status": "subscribed"},
                {
                    "type": "consent",
                    "channel": "email",
                    "topic": "newsletter",
                    "status": "subscribed",
                },
            ],
        },
    },
    {
        "key": "sms-reachable-espresso",
        "name": "Espresso lovers we can text",
        "description": "Favourite roast espresso, reachable by SMS.",
        "rule": {
            "type": "and",
            "rules": [
                {
                    "type": "profile",
                    "field": "traits.favouriteRoast",
                    "op": "equals",
                    "value": "espresso",
                },
                {"type": "reachable", "channel": "sms"},
            ],
        },
    },
)


def install_segments(session: Session, *, now: datetime) -> dict[str, int]:
    """The built-in and demo segments, computed; answers members per segment key."""
    segments_service.ensure_builtins(session, now=now)
    for definition in DEMO_SEGMENTS:
        if segments_service.find(session, definition["key"]) is None:
            segments_service.create(session, SegmentCreate(**definition))
    # Computed as of the clock, not the store's "now": it is seconds later, after loading.
    return {r.key: r.members for r in segments_service.compute_all(session)}


def has_customers(session: Session) -> bool:
    page = customers_service.list_customers(session, CustomerQuery(), cursor=None, limit=1)
    return bool(page.items)


def _with_birthdays(messages: Iterable[Message], seed: int) -> Iterator[Message]:
    """Three customers in four give their birthday when they sign up (the first identify, the
    one with the email): the birthday journey reads the trait."""
    for message in messages:
        traits = message.get("traits")
        if message["type"] == "identify" and traits and "email" in traits:
            born = activity.birthday(seed, str(message["userId"]))
            if born is not None:
                message = message | {"traits": traits | {"birthday": born}}
        yield message


def _counted(messages: Iterable[Message], summary: DemoSummary) -> Iterator[Message]:
    for message in messages:
        summary.count(message)
        yield message


def _chunks(messages: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(messages)
    while chunk := list(islice(iterator, size)):
        yield chunk
