"""What follows an order in the demo store, planned the moment it is placed: the parcel
shipped (some late, a few never), out for delivery (most carriers scan it), delivered (some
late), sometimes returned (label, parcel back, refund); or, collected at a store, ready and
picked up (or not). A few orders are cancelled and refunded at once. Pure: a function of the
order and a `random.Random` seeded from its id, so the same order is always planned alike.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from regulars.demo.generator import CURRENCY

Step = tuple[datetime, str, dict[str, Any]]  # when, event, properties

P_RETURN = 0.1
STORES = {  # time zone prefix: (location, address, time zone)
    "Europe": ("Lantern Roastery Café", "Oranienstraße 12, 10999 Berlin", "Europe/Berlin"),
    "America": (
        "Lantern Coffee Bar",
        "1120 SE Division St, Portland, OR 97202",
        "America/Los_Angeles",
    ),
}
CARRIERS = {  # time zone: (carrier, tracking page)
    "Europe/London": ("Royal Mail", "https://www.royalmail.com/track-your-item#/tracking-results/"),
    "Europe/Berlin": ("DHL", "https://www.dhl.de/de/privatkunden.html?piececode="),
    "Europe/Paris": ("Colissimo", "https://www.laposte.fr/outils/suivre-vos-envois?code="),
    "Europe/Madrid": ("Correos", "https://www.correos.es/es/es/herramientas/localizador?num="),
    "America/Mexico_City": ("DHL", "https://www.dhl.com/mx-es/home/rastreo.html?tracking-id="),
    "Asia/Tokyo": ("Yamato", "https://toi.kuronekoyamato.co.jp/cgi-bin/tneko?number="),
    "Australia/Sydney": ("Australia Post", "https://auspost.com.au/mypost/track/details/"),
    "Australia/Perth": ("Australia Post", "https://auspost.com.au/mypost/track/details/"),
}
US_CARRIER = ("UPS", "https://www.ups.com/track?tracknum=")
RETURN_REASONS = ("damaged", "wrong_item", "changed_mind", "changed_mind")


def plan(rng: random.Random, timezone: str, order: dict[str, Any], at: datetime) -> list[Step]:
    """The events that follow an order placed at `at` by a customer in `timezone`, in time
    order (Order Completed's properties, with `fulfillment` "pickup" or "delivery")."""
    pickup = order.get("fulfillment") == "pickup"
    steps = (_pickup if pickup else _delivery)(rng, timezone, order, at)
    return sorted(steps, key=lambda step: step[0])


def store_of(timezone: str) -> tuple[str, str, str] | None:
    """The store (name, address, time zone) near a customer, where there is one."""
    return STORES.get(timezone.partition("/")[0])


def _delivery(rng: random.Random, timezone: str, order: dict[str, Any], at: datetime) -> list[Step]:
    """Shipped (some late, a few never), out for delivery (most carriers scan it), delivered
    (some late), a return for some; a few orders are cancelled and refunded at once."""
    order_id = order["order_id"]
    ref = {"order_id": order_id}
    if rng.random() < 0.03:
        cancelled = at + timedelta(hours=rng.uniform(1.5, 6))
        refund = _refund(order, [(line, line["quantity"]) for line in order["products"]])
        return [
            (cancelled, "Order Cancelled", ref | {"reason": "customer_request"}),
            (cancelled + timedelta(hours=rng.uniform(2, 5)), "Order Refunded", refund),
        ]
    roll = rng.random()
    hours = rng.uniform(14, 60) if roll < 0.86 else rng.uniform(76, 200) if roll < 0.98 else 330
    shipped = at + timedelta(hours=hours)
    carrier, page = _carrier(timezone)
    number = f"{rng.randrange(10**11, 10**12)}"
    tracking = {"carrier": carrier, "tracking_url": page + number, "tracking_number": number}
    steps: list[Step] = [(shipped, "Order Shipped", ref | tracking)]
    roll = rng.random()
    if roll < 0.85:
        out = shipped + timedelta(hours=rng.uniform(20, 70))
        steps.append((out, "Order Out for Delivery", ref))
        late = rng.random() < 0.08
        delivered = out + timedelta(hours=rng.uniform(26, 60) if late else rng.uniform(2, 10))
    elif roll < 0.99:
        delivered = shipped + timedelta(hours=rng.uniform(30, 110))  # no scan on the way
    else:
        return steps  # lost
    steps.append((delivered, "Order Delivered", ref))
    if rng.random() < P_RETURN:
        steps += _return(rng, order, delivered)
    return steps


def _return(rng: random.Random, order: dict[str, Any], delivered: datetime) -> list[Step]:
    """Requested a few days after delivery; a label at once or later; the parcel back in a
    week (some after two weeks, a few never); the refund a few days later (some late)."""
    return_id = f"RT-{order['order_id'].removeprefix('LC')}"
    ref = {"return_id": return_id, "order_id": order["order_id"]}
    reason = rng.choice(RETURN_REASONS)
    days = rng.uniform(2, 10) if reason == "changed_mind" else rng.uniform(0.3, 3)
    requested = delivered + timedelta(days=days)
    asked = ref | {"reason": reason}
    label = f"https://lantern.example/returns/{return_id}/label.pdf"
    steps: list[Step] = []
    if rng.random() < 0.5:
        asked["label_url"] = label
    else:
        hours = rng.uniform(2, 20) if rng.random() < 0.8 else rng.uniform(26, 50)
        steps.append((requested + timedelta(hours=hours), "Return Label Created", ref))
    steps.insert(0, (requested, "Return Requested", asked))
    roll = rng.random()
    if roll < 0.04:
        cancelled = requested + timedelta(days=rng.uniform(1, 5))
        return [*steps, (cancelled, "Return Cancelled", ref)]
    if roll > 0.93:
        return steps  # never sent back
    days = rng.uniform(3, 12) if roll < 0.82 else rng.uniform(15, 25)
    received = requested + timedelta(days=days)
    steps.append((received, "Return Received", ref))
    line = rng.choice(order["products"])
    refunded = received + timedelta(days=rng.uniform(1, 5) if rng.random() < 0.85 else 9)
    steps.append((refunded, "Order Refunded", _refund(order, [(line, line["quantity"])])))
    return steps


def _pickup(rng: random.Random, timezone: str, order: dict[str, Any], at: datetime) -> list[Step]:
    """Ready at the store a few hours later; collected within two days, or after the
    reminder, or never; a few cancelled."""
    store = store_of(timezone)
    assert store is not None, "click and collect only where there is a store"
    location, address, zone = store
    ready = at + timedelta(hours=rng.uniform(2, 8))
    until = (
        (ready + timedelta(days=7))
        .astimezone(ZoneInfo(zone))
        .replace(hour=18, minute=0, second=0, microsecond=0)
    )
    ref = {"order_id": order["order_id"]}
    details = {"location": location, "address": address, "ready_until": until.isoformat()}
    details["pickup_code"] = f"{rng.randrange(1000, 10000)}"
    steps: list[Step] = [(ready, "Order Ready for Pickup", ref | details)]
    roll = rng.random()
    if roll < 0.55:
        steps.append((ready + timedelta(hours=rng.uniform(2, 40)), "Order Picked Up", ref))
    elif roll < 0.8:
        steps.append((ready + timedelta(hours=rng.uniform(54, 110)), "Order Picked Up", ref))
    elif roll < 0.9:
        cancelled = ready + timedelta(hours=rng.uniform(60, 100))
        refund = _refund(order, [(line, line["quantity"]) for line in order["products"]])
        steps.append((cancelled, "Order Cancelled", ref | {"reason": "not_collected"}))
        steps.append((cancelled + timedelta(hours=3), "Order Refunded", refund))
    return steps


def _refund(order: dict[str, Any], lines: Iterable[tuple[dict[str, Any], int]]) -> dict[str, Any]:
    products = [dict(line) | {"quantity": quantity} for line, quantity in lines]
    cents = sum(round(float(p["price"]) * 100) * p["quantity"] for p in products)
    return {"order_id": order["order_id"], "revenue": cents / 100, "total": cents / 100,
            "currency": order.get("currency", CURRENCY), "products": products}  # fmt: skip


def _carrier(timezone: str) -> tuple[str, str]:
    return CARRIERS.get(timezone, US_CARRIER)
