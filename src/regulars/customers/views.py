"""Dashboard pages of customers: the searchable list, one profile, its timeline by scroll."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from regulars.customers import service
from regulars.customers.rules import (
    ORDER_COMPLETED,
    MessageInvalid,
    display_name,
    order_amount_cents,
)
from regulars.customers.schemas import CustomerPage, CustomerQuery, CustomerRead, EventRead
from regulars.db import session_scope
from regulars.errors import NotFound
from regulars.identity.roles import Permission
from regulars.identity.staff import SignedIn
from regulars.journeys import service as journeys
from regulars.kit import clock
from regulars.kit.zones import zone_or_utc
from regulars.messages import service as messages
from regulars.pages import page, render
from regulars.segments import service as segments

router = APIRouter(include_in_schema=False)
can_read = page(Permission.CUSTOMERS_READ)

PAGE = 50
SEGMENT_ROUNDS = 5  # search pages read to fill one page of a segment's matches
ICONS = {"identify": "👤", "track": "⚡", "page": "📄", "screen": "📱", "group": "🏢"}
CHANNEL_ICONS = {"email": "✉️", "sms": "💬", "whatsapp": "💬", "push": "🔔", "inapp": "📥"}


def _segment_filtered(session: Session, q: str, segment: str, cursor: str | None) -> CustomerPage:
    """Search results that are members of `segment`, reading a few search pages at most."""
    rule = {"type": "segment", "segment": segment}
    kept: list[CustomerRead] = []
    found = CustomerPage(items=[], next_cursor=cursor)
    for _ in range(SEGMENT_ROUNDS):
        found = service.search(session, q, cursor=found.next_cursor, limit=PAGE)
        ids = [c.id for c in found.items]
        members = segments.condition_holds(session, rule, ids, now=clock.now())
        kept += [c for c in found.items if c.id in members]
        if len(kept) >= PAGE or found.next_cursor is None:
            break
    return CustomerPage(items=kept, next_cursor=found.next_cursor)


def _members(session: Session, segment: str, cursor: str | None) -> CustomerPage:
    members = segments.members(session, segment, cursor=cursor, limit=PAGE)
    ids = [m.customer_id for m in members.items]
    reads = service.get_customers(session, ids, identities=False)
    return CustomerPage(
        items=[reads[i] for i in ids if i in reads], next_cursor=members.next_cursor
    )


def find_page(session: Session, q: str, segment: str, cursor: str | None) -> CustomerPage:
    if q and segment:
        return _segment_filtered(session, q, segment, cursor)
    if q:
        return service.search(session, q, cursor=cursor, limit=PAGE)
    if segment:
        return _members(session, segment, cursor)
    return service.list_customers(session, CustomerQuery(), cursor=cursor, limit=PAGE)


@router.get("/customers")
def customers_list(
    request: Request,
    q: str = Query("", max_length=200),
    segment: str = Query("", max_length=100),
    cursor: str | None = Query(None, max_length=500),
    staff: SignedIn = Depends(can_read),
) -> HTMLResponse:
    q = q.strip()
    with session_scope(readonly=True) as session:
        found = find_page(session, q, segment, cursor)
        choices = segments.list_page(session, cursor=None, limit=200).items
    values: dict[str, Any] = {
        "title": "Customers",
        "q": q,
        "segment": segment,
        "segments": choices,
        "found": found,
        "kind": service.classify(q) if q else "",
        "first_page": cursor is None,
    }
    if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "results":
        return render(request, "customers/_results.html", staff, **values)
    return render(request, "customers/list.html", staff, **values)


# --- the profile ---


def _money(properties: dict[str, Any]) -> str:
    try:
        cents = order_amount_cents(properties)
    except MessageInvalid:
        return ""
    currency = str(properties.get("currency") or "USD").upper()
    amount = f"{cents / 100:,.2f}"
    return f"${amount}" if currency == "USD" else f"{amount} {currency}"


def _system_summary(name: str, properties: dict[str, Any]) -> tuple[str, str]:
    if name.startswith("segment."):
        verb = "Entered" if name.endswith("entered") else "Left"
        return "🎯", f"{verb} segment {properties.get('segment') or properties.get('segment_key')}"
    if name == "message.received":
        return "💬", f"Reply on {properties.get('channel')}: {properties.get('body', '')}"[:140]
    if name.startswith("message."):
        channel = str(properties.get("channel", "message"))
        status = name.removeprefix("message.")
        template = properties.get("template") or "inline message"
        icon = CHANNEL_ICONS.get(channel, "✉️")
        return icon, f"{channel.capitalize()} {status}: {template}"
    return "⚙️", name


def _track_summary(name: str, properties: dict[str, Any]) -> str:
    parts = [name]
    products = properties.get("products")
    if isinstance(products, list):
        parts.append(f"{len(products)} item{'s' if len(products) != 1 else ''}")
    if name == ORDER_COMPLETED or "revenue" in properties or "total" in properties:
        amount = _money(properties)
        if amount:
            parts.append(amount)
    return " · ".join(parts)


def describe(event: EventRead) -> tuple[str, str]:
    """An icon and a one-line summary, readable at a glance."""
    props = event.properties
    if event.type == "system":
        return _system_summary(event.name or "", props)
    if event.type == "track":
        return ICONS["track"], _track_summary(event.name or "event", props)
    if event.type in ("page", "screen"):
        where = event.name or props.get("path") or props.get("url") or props.get("title") or ""
        return ICONS[event.type], f"Viewed {event.type} {where}".strip()
    if event.type == "identify":
        keys = ", ".join(sorted(props)[:6]) if props else "no new traits"
        return ICONS["identify"], f"Profile updated: {keys}"
    return ICONS.get(event.type, "•"), f"{event.type.capitalize()} {event.name or ''}".strip()


def timeline_items(events: list[EventRead], zone: ZoneInfo) -> list[dict[str, Any]]:
    items = []
    for event in events:
        icon, summary = describe(event)
        items.append(
            {
                "event": event,
                "icon": icon,
                "summary": summary,
                "local": _local(event.timestamp, zone),
                "json": json.dumps(event.properties, indent=2, sort_keys=True, default=str),
            }
        )
    return items


def _local(at: datetime | None, zone: ZoneInfo) -> str:
    return "" if at is None else at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _profile_values(session: Session, customer: CustomerRead) -> dict[str, Any]:
    zone = zone_or_utc(customer.timezone)
    events = service.list_events(session, customer.id, limit=PAGE)
    runs = journeys.runs_of_customer(session, customer.id).items
    deliveries = messages.list_deliveries(session, customer=customer.id, limit=20).items
    name = display_name(customer.first_name, customer.last_name)
    return {
        "title": name or customer.email or customer.id,
        "customer": customer,
        "zone": zone.key,
        "local": lambda at: _local(at, zone),
        "traits_json": json.dumps(customer.traits, indent=2, sort_keys=True, default=str),
        "memberships": segments.memberships_of(session, customer.id).items,
        "runs": [r for r in runs if r.ended_at is None][:20],
        "deliveries": deliveries,
        "items": timeline_items(events.items if events else [], zone),
        "next_cursor": events.next_cursor if events else None,
    }


@router.get("/customers/{customer_id}")
def customer_profile(
    request: Request, customer_id: str, staff: SignedIn = Depends(can_read)
) -> Response:
    with session_scope(readonly=True) as session:
        customer = service.get_customer(session, customer_id)
        if customer is None:
            raise NotFound(f"no customer with id {customer_id!r}", details={"id": customer_id})
        if customer.id != customer_id:  # a merged-away id: the survivor's page
            return RedirectResponse(f"/customers/{customer.id}", status_code=303)
        values = _profile_values(session, customer)
    return render(request, "customers/profile.html", staff, **values)


@router.get("/customers/{customer_id}/timeline")
def customer_timeline(
    request: Request,
    customer_id: str,
    before: str = Query(..., max_length=500),
    staff: SignedIn = Depends(can_read),
) -> HTMLResponse:
    """The next events after `before`, as list items for infinite scroll."""
    with session_scope(readonly=True) as session:
        events = service.list_events(session, customer_id, cursor=before, limit=PAGE)
        zones = service.time_zones(session, [customer_id])
    if events is None:
        raise NotFound(f"no customer with id {customer_id!r}", details={"id": customer_id})
    items = timeline_items(events.items, zone_or_utc(zones.get(customer_id)))
    return render(
        request,
        "customers/_timeline.html",
        staff,
        customer_id=customer_id,
        items=items,
        next_cursor=events.next_cursor,
    )
