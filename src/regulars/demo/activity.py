"""What the customers of Lantern Coffee Roasters do while `regulars simulate` moves the store
forward. Pure: no database, no clock; `simulation` stores what this makes.

Each step, `Store.hour(since, until, stamp)` answers the Segment messages of that stretch of
time: visits (pages, products viewed by category, carts, checkouts, many of them abandoned),
orders, sign-ups, and what was planned for then. What follows an order is planned when it is
placed (`fulfilment.plan`, from the order alone), so a simulation that stops and starts again
plans the orders it finds once more (`replan`) and goes on where it stopped; planned events
come out one per step at most, so a journey waiting for one has reached its wait first.
Every choice comes from `random.Random` seeded from the seed and a key (the step's moment, a
customer's or an order's id): the same seed gives the same store.
"""

from __future__ import annotations

import heapq
import math
import random
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from regulars.demo import fulfilment
from regulars.demo.generator import (
    MARKETS,
    PAGES,
    PRODUCTS,
    Message,
    Product,
    _city,
    _iso,
    _item,
    _order,
    _split_name,
    _unique_email,
    _unique_phone,
)

# persona: (weight, visits per day, P(a visit fills a cart))
PERSONAS = {
    "browser": (30, 0.03, 0.15),
    "occasional": (30, 0.05, 0.45),
    "regular": (25, 0.10, 0.60),
    "subscriber": (15, 0.06, 0.40),
}
QUIET = 0.2  # known customers who do nothing at all: lifecycle stages move them along
P_CHECKOUT = 0.8  # a cart goes to checkout
P_PAY = 0.55  # a checkout becomes an order in the same visit; the rest is abandoned
P_COME_BACK = 0.12  # an abandoned checkout is ordered later anyway, reminded or not
P_PICKUP = 0.12  # click and collect, where there is a store
P_BIRTHDAY = 0.75  # customers who gave their birthday
SIGN_UPS = (3.0, 0.002)  # per day: a base, plus this share of the known customers
# Relative visits by local hour (0-23): quiet nights, busy lunch breaks and evenings.
_HOURLY = (0.15, 0.1, 0.1, 0.1, 0.15, 0.25, 0.4, 0.8, 1.1, 1.3, 1.3, 1.3,
           1.5, 1.5, 1.2, 1.2, 1.2, 1.3, 1.6, 1.7, 1.7, 1.6, 1.0, 0.5)  # fmt: skip
HOURLY = tuple(w * 24 / sum(_HOURLY) for w in _HOURLY)


@dataclass(frozen=True, slots=True)
class Shopper:
    user_id: str
    anonymous_id: str | None
    timezone: str
    locale: str
    rate: float  # visits per day; 0: gone quiet
    p_cart: float


def shopper(
    seed: int, user_id: str, *, anonymous_id: str | None, timezone: str | None, locale: str | None
) -> Shopper:
    """A known customer's habits in the simulation, drawn from the seed and their user id."""
    rng = random.Random(f"{seed}/shopper/{user_id}")
    persona = rng.choices(list(PERSONAS), weights=[p[0] for p in PERSONAS.values()])[0]
    _, rate, p_cart = PERSONAS[persona]
    if rng.random() < QUIET:
        rate = 0.0
    zone = timezone or "UTC"
    return Shopper(user_id, anonymous_id, zone, locale or "en-US", rate, p_cart)


def birthday(seed: int, user_id: str) -> str | None:
    """The birthday a customer gives (YYYY-MM-DD), or None for the quarter who do not."""
    rng = random.Random(f"{seed}/birthday/{user_id}")
    if rng.random() >= P_BIRTHDAY:
        return None
    first, last = date(1955, 1, 1).toordinal(), date(2004, 12, 31).toordinal()
    return date.fromordinal(rng.randint(first, last)).isoformat()


@dataclass(order=True, slots=True)
class Planned:
    """What is still to happen to an order (its `steps`, the first due at `at`), or an
    abandoned checkout its customer comes back to (ordered then, if it is still open).
    `known`: when it was planned. An event is never let out in the step of the one before it:
    the journey waiting for it must have reached its wait first."""

    at: datetime
    key: str
    user_id: str = field(compare=False)
    known: datetime = field(compare=False)
    steps: tuple[fulfilment.Step, ...] = field(default=(), compare=False)
    checkout: str | None = field(default=None, compare=False)


@dataclass(slots=True)
class Checkout:
    checkout_id: str
    user_id: str
    at: datetime
    cart: list[tuple[Product, int]]
    pickup: bool


@dataclass(slots=True)
class Hour:
    """What one step makes: messages in two waves (an order paid in the visit that started
    its checkout goes in the second, so the checkout's journey run exists when it comes), and
    the customers who signed up."""

    first: list[Message] = field(default_factory=list)
    second: list[Message] = field(default_factory=list)
    signed_up: list[Shopper] = field(default_factory=list)


class _Ids:
    def __init__(self, stamp: str) -> None:
        self.stamp, self.n = stamp, 0

    def __call__(self) -> str:
        self.n += 1
        return f"sim:{self.stamp}:{self.n}"


@dataclass
class Store:
    """The customers as the simulation knows them (`shoppers`, sorted by user id, sign-ups
    added at the end), what is planned, and the abandoned checkouts still open."""

    seed: int
    shoppers: list[Shopper]
    taken: set[str] = field(default_factory=set)  # emails and phones in use
    plans: list[Planned] = field(default_factory=list)  # a heap
    open_checkouts: dict[str, Checkout] = field(default_factory=dict)
    by_user: dict[str, Shopper] = field(init=False)

    def __post_init__(self) -> None:
        self.by_user = {s.user_id: s for s in self.shoppers}

    # -- one step ---------------------------------------------------------------------------

    def hour(self, since: datetime, until: datetime, stamp: str) -> Hour:
        """The messages of the step from `since` to `until` (`stamp` names it, in the ids):
        what was planned for then, visits, sign-ups."""
        rng, ids, hour = random.Random(f"{self.seed}/{stamp}"), _Ids(stamp), Hour()
        self._due(since, until, hour)
        days, middle = (until - since).total_seconds() / 86400, since + (until - since) / 2
        local_hours = {}
        for person in list(self.shoppers):
            if not person.rate:
                continue
            if person.timezone not in local_hours:
                local_hours[person.timezone] = middle.astimezone(ZoneInfo(person.timezone)).hour
            if rng.random() < person.rate * days * HOURLY[local_hours[person.timezone]]:
                at = since + (until - since) * rng.random()
                self.visit(person, at, until, rng=rng, ids=ids, hour=hour)
        base, share = SIGN_UPS
        for n in range(_poisson(rng, (base + share * len(self.shoppers)) * days)):
            at = since + (until - since) * rng.random()
            number = f"{stamp.replace('T', '')[2:]}{n:02d}"  # 2603021300 + 00: unique
            self._sign_up(at, until, number, rng, ids, hour)
        self._forget_checkouts(until - timedelta(days=3))
        return hour

    def _due(self, since: datetime, until: datetime, hour: Hour) -> None:
        """Let out what is due by `until`, but nothing planned in this very step."""
        waiting = []
        while self.plans and self.plans[0].at <= until:
            item = heapq.heappop(self.plans)
            if item.known > since:
                waiting.append(item)
            else:
                self._release(item, max(item.at, since + timedelta(seconds=1)), hour)
        for item in waiting:
            heapq.heappush(self.plans, item)

    def visit(
        self,
        person: Shopper,
        at: datetime,
        until: datetime,
        *,
        rng: random.Random,
        ids: _Ids,
        hour: Hour,
        p_cart: float | None = None,
    ) -> None:
        """One visit: pages, products viewed, maybe a cart, a checkout and an order."""
        steps: list[tuple[str, dict[str, Any]]] = [
            ("page", {"name": name, "properties": {"path": path, "title": name}})
            for name, path in rng.sample(PAGES, rng.randint(1, 3))
        ]
        viewed = rng.sample(PRODUCTS, rng.randint(1, 3))
        steps += [("Product Viewed", {"properties": _item(p)}) for p in viewed]
        buys = rng.random() < (person.p_cart if p_cart is None else p_cart)
        cart = [(p, rng.choice((1, 1, 1, 2))) for p in viewed[: rng.randint(1, 2)]] if buys else []
        steps += [("Product Added", {"properties": _item(p) | {"quantity": q}}) for p, q in cart]
        checkout: Checkout | None = None
        if cart and rng.random() < P_CHECKOUT:
            steps.append(("Checkout Started", {}))
        times = _spaced(at, until, len(steps), rng)
        for (kind, fields), moment in zip(steps, times, strict=True):
            if kind == "page":
                hour.first.append(_message(person, "page", moment, ids(), **fields))
                continue
            if kind == "Checkout Started":
                checkout = self._checkout(person, moment, cart, rng)
                fields = {"properties": _checkout_properties(checkout)}
            hour.first.append(_track(person, kind, moment, ids(), **fields))
        if checkout is None:
            return
        if rng.random() < P_PAY:
            paid = min(times[-1] + timedelta(seconds=rng.randint(40, 240)), until)
            hour.second.append(self.order(checkout, paid))
        else:
            self._abandoned(checkout, since=checkout.at)

    def clicked(
        self, user_id: str, template: str, at: datetime, until: datetime, *, stamp: str
    ) -> Hour:
        """A customer clicked a message at `at`: a checkout reminder brings half of them back
        to pay; any other marketing message, a visit likelier than most to fill a cart."""
        rng, hour = random.Random(f"{self.seed}/click/{user_id}/{stamp}"), Hour()
        person = self.by_user.get(user_id)
        if person is None:
            return hour
        if template.startswith("checkout_reminder"):
            waiting = [c for c in self.open_checkouts.values() if c.user_id == user_id]
            if waiting and rng.random() < 0.5:
                checkout = max(waiting, key=lambda c: c.at)
                paid = min(at + timedelta(minutes=rng.uniform(2, 15)), until)
                hour.first.append(self.order(checkout, paid))
            return hour
        ids = _Ids(f"{stamp}:{user_id}")
        self.visit(person, at, until, rng=rng, ids=ids, hour=hour, p_cart=0.5)
        return hour

    # -- orders and what follows them -------------------------------------------------------

    def order(self, checkout: Checkout, at: datetime) -> Message:
        """The checkout paid: its Order Completed, with what follows it planned."""
        self.open_checkouts.pop(checkout.checkout_id, None)
        person = self.by_user[checkout.user_id]
        number = checkout.checkout_id.removeprefix("ch_")
        properties = _order(checkout.cart) | {
            "order_id": f"LC{number}",
            "checkout_id": checkout.checkout_id,
            "fulfillment": "pickup" if checkout.pickup else "delivery",
        }
        if checkout.pickup:
            location, address, _ = fulfilment.store_of(person.timezone) or ("", "", "")
            properties |= {"location": location, "address": address}
        message = _track(
            person, "Order Completed", at, f"sim:{number}:ordered", properties=properties
        )
        self.replan(person.user_id, properties, at, since=at)
        return message

    def replan(
        self, user_id: str, properties: dict[str, Any], at: datetime, *, since: datetime
    ) -> None:
        """Plan what follows an order placed at `at` (again, after a restart): the parts
        after `since`."""
        person = self.by_user.get(user_id)
        if person is None:
            return
        rng = random.Random(f"{self.seed}/order/{properties['order_id']}")
        planned = fulfilment.plan(rng, person.timezone, properties, at)
        steps = tuple(step for step in planned if step[0] > since)
        if steps:
            key = str(properties["order_id"])
            heapq.heappush(self.plans, Planned(steps[0][0], key, user_id, at, steps))

    def reopen(
        self, user_id: str, properties: dict[str, Any], at: datetime, *, since: datetime
    ) -> None:
        """An abandoned checkout found after a restart: open again, and its coming back
        planned again."""
        person = self.by_user.get(user_id)
        if person is None:
            return
        by_sku = {p.sku: p for p in PRODUCTS}
        cart = [
            (by_sku[line["sku"]], int(line["quantity"]))
            for line in properties.get("products", [])
            if line.get("sku") in by_sku
        ]
        checkout_id = str(properties["checkout_id"])
        pickup = bool(properties.get("pickup"))
        self._abandoned(Checkout(checkout_id, user_id, at, cart, pickup), since=since)

    def _abandoned(self, checkout: Checkout, *, since: datetime) -> None:
        """Keep the checkout open (a reminder's click may bring its customer back); some
        come back anyway, a few hours or days later."""
        self.open_checkouts[checkout.checkout_id] = checkout
        rng = random.Random(f"{self.seed}/checkout/{checkout.checkout_id}")
        if rng.random() < P_COME_BACK:
            later = checkout.at + timedelta(hours=rng.uniform(3, 60))
            if later > since:
                came = Planned(later, checkout.checkout_id, checkout.user_id, checkout.at)
                came.checkout = checkout.checkout_id
                heapq.heappush(self.plans, came)

    def _release(self, item: Planned, at: datetime, hour: Hour) -> None:
        """Let out the item's first event at `at`; its next one waits for a later step."""
        if item.checkout is not None:
            checkout = self.open_checkouts.get(item.checkout)
            if checkout is not None:
                hour.first.append(self.order(checkout, at))
            return
        (_, event, properties), rest = item.steps[0], item.steps[1:]
        person = self.by_user[item.user_id]
        message_id = f"sim:{item.key}:{event}"
        hour.first.append(_track(person, event, at, message_id, server=True, properties=properties))
        if rest:
            heapq.heappush(self.plans, Planned(rest[0][0], item.key, item.user_id, at, rest))

    def _checkout(
        self, person: Shopper, at: datetime, cart: list[tuple[Product, int]], rng: random.Random
    ) -> Checkout:
        number = f"{person.user_id.removeprefix('lc_')}-{at:%y%m%d%H%M%S}"
        pickup = fulfilment.store_of(person.timezone) is not None and rng.random() < P_PICKUP
        return Checkout(f"ch_{number}", person.user_id, at, cart, pickup)

    def _forget_checkouts(self, before: datetime) -> None:
        for key in [k for k, c in self.open_checkouts.items() if c.at < before]:
            del self.open_checkouts[key]

    # -- new customers -----------------------------------------------------------------------

    def _sign_up(
        self, at: datetime, until: datetime, number: str, rng: random.Random, ids: _Ids, hour: Hour
    ) -> None:
        market = rng.choices(MARKETS, weights=[m.weight for m in MARKETS])[0]
        zone = rng.choice(market.timezones)
        anonymous = Shopper("", _uuid(rng), zone, market.locale, 0.0, 0.0)
        user_id = f"lc_{number}"
        traits = self._traits(rng, market, zone, user_id)
        times = _spaced(at, until, 4, rng)
        for (name, path), moment in zip(rng.sample(PAGES, 2), times, strict=False):
            hour.first.append(_page(anonymous, name, path, moment, ids()))
        person = shopper(
            self.seed, user_id, anonymous_id=anonymous.anonymous_id, timezone=zone,
            locale=market.locale,
        )  # fmt: skip
        person = replace(person, rate=max(person.rate, 0.04))  # new: not quiet yet
        hour.first.append(_identify(person, times[2], ids(), traits))
        source = rng.choice(("account", "newsletter_form", "checkout"))
        hour.first.append(
            _track(person, "Signed Up", times[3], ids(), properties={"source": source})
        )
        self.shoppers.append(person)
        self.by_user[user_id] = person
        hour.signed_up.append(person)
        if rng.random() < 0.3:
            self.visit(person, times[3], until, rng=rng, ids=ids, hour=hour, p_cart=0.6)

    def _traits(self, rng: random.Random, market: Any, zone: str, user_id: str) -> dict[str, Any]:
        first, first_ascii = _split_name(rng.choice(market.first_names))
        last, last_ascii = _split_name(rng.choice(market.last_names))
        email = _unique_email(rng, first_ascii, last_ascii, market, self.taken)
        consents = {"email": "subscribed" if rng.random() < 0.8 else "unsubscribed"}
        if consents["email"] == "subscribed" and rng.random() < 0.6:
            consents["email:newsletter"] = "subscribed"
        traits: dict[str, Any] = {
            "email": email,
            "firstName": first,
            "lastName": last,
            "favouriteRoast": rng.choice(("light", "medium", "dark", "espresso")),
            "brewMethod": rng.choice(("filter", "espresso", "french press", "aeropress")),
            "city": _city(zone, email),
        }
        if rng.random() < 0.6:
            traits["phone"] = _unique_phone(rng, market, self.taken)
            if rng.random() < 0.4:
                consents["sms"] = "subscribed"
        traits["consents"] = consents
        if (born := birthday(self.seed, user_id)) is not None:
            traits["birthday"] = born
        return traits

    # -- who is concerned ------------------------------------------------------------------------

    def parcels_on_the_way(self) -> list[str]:
        """User ids of the customers with a parcel not delivered yet."""
        return sorted(
            {p.user_id for p in self.plans if any(s[1] == "Order Delivered" for s in p.steps)}
        )


def _checkout_properties(checkout: Checkout) -> dict[str, Any]:
    return _order(checkout.cart) | {
        "checkout_id": checkout.checkout_id,
        "checkout_url": f"https://lantern.example/checkout/{checkout.checkout_id}",
        "pickup": checkout.pickup,
    }


# -- messages -------------------------------------------------------------------------------------


def _track(
    person: Shopper, event: str, at: datetime, message_id: str, *, server: bool = False,
    **fields: Any,
) -> Message:  # fmt: skip
    return _message(person, "track", at, message_id, server=server, event=event, **fields)


def _page(person: Shopper, name: str, path: str, at: datetime, message_id: str) -> Message:
    properties = {"path": path, "title": name}
    return _message(person, "page", at, message_id, name=name, properties=properties)


def _identify(person: Shopper, at: datetime, message_id: str, traits: dict[str, Any]) -> Message:
    return _message(person, "identify", at, message_id, traits=traits)


def identify(person: Shopper, at: datetime, message_id: str, traits: dict[str, Any]) -> Message:
    """An identify from the shop's server (a profile completed: a birthday given)."""
    return _message(person, "identify", at, message_id, server=True, traits=traits)


def _message(
    person: Shopper, kind: str, at: datetime, message_id: str, *, server: bool = False,
    **fields: Any,
) -> Message:  # fmt: skip
    message: Message = {"type": kind, "messageId": message_id, **fields}
    if person.anonymous_id and not server:
        message["anonymousId"] = person.anonymous_id
    if person.user_id:
        message["userId"] = person.user_id
    message["timestamp"] = _iso(at)
    message["context"] = {"locale": person.locale, "timezone": person.timezone}
    return message


def _spaced(at: datetime, until: datetime, count: int, rng: random.Random) -> list[datetime]:
    """`count` moments from `at`, 8 to 150 seconds apart, moved earlier to end by `until`."""
    offsets, total = [], 0.0
    for _ in range(count):
        offsets.append(total)
        total += rng.randint(8, 150)
    overflow = (at + timedelta(seconds=offsets[-1]) - until).total_seconds() if offsets else 0
    start = at - timedelta(seconds=max(overflow, 0))
    return [start + timedelta(seconds=s) for s in offsets]


def _poisson(rng: random.Random, mean: float) -> int:
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))
