"""Dashboard pages of messages: broadcasts (progress, results, create, cancel), the
deliveries log and the sandbox outbox. Lists are keyset-paginated by delivery id, newest
first, 50 a page (the same query as GET /api/deliveries)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from regulars.config import get_settings
from regulars.db import session_scope
from regulars.errors import NotFound, RegularsError
from regulars.identity.roles import Permission
from regulars.identity.staff import SignedIn
from regulars.messages import service
from regulars.messages.models import PENDING_STATUSES, DeliveryStatus, MessageChannel
from regulars.messages.schemas import BroadcastCreate, BroadcastRead
from regulars.pages import form_fields, page, render
from regulars.segments import service as segments

router = APIRouter(include_in_schema=False)
PAGE = 50
BROADCASTS_SHOWN = 20
SANDBOX = "sandbox"

# A delivery's status is how far it got; each result counts those that got at least there.
RESULTS: dict[str, frozenset[DeliveryStatus]] = {
    "sent": frozenset(
        {
            DeliveryStatus.SENT,
            DeliveryStatus.DELIVERED,
            DeliveryStatus.OPENED,
            DeliveryStatus.CLICKED,
            DeliveryStatus.UNSUBSCRIBED,
            DeliveryStatus.COMPLAINED,
        }
    ),
    "delivered": frozenset(
        {
            DeliveryStatus.DELIVERED,
            DeliveryStatus.OPENED,
            DeliveryStatus.CLICKED,
            DeliveryStatus.UNSUBSCRIBED,
        }
    ),
    "opened": frozenset({DeliveryStatus.OPENED, DeliveryStatus.CLICKED}),
    "clicked": frozenset({DeliveryStatus.CLICKED}),
    "unsubscribed": frozenset({DeliveryStatus.UNSUBSCRIBED}),
    "failed": frozenset({DeliveryStatus.FAILED, DeliveryStatus.BOUNCED}),
}


def results(progress: dict[str, int]) -> dict[str, int]:
    return {name: sum(progress.get(s.value, 0) for s in wanted) for name, wanted in RESULTS.items()}


def progress_of(broadcast: BroadcastRead) -> dict[str, int]:
    """Queued members (the audience so far) and how many of their messages are settled."""
    total = sum(broadcast.progress.values())
    pending = sum(broadcast.progress.get(s.value, 0) for s in PENDING_STATUSES)
    return {"audience": broadcast.audience, "total": total, "done": total - pending}


def results_chart(rows: list[tuple[BroadcastRead, dict[str, int]]]) -> dict[str, Any]:
    """ECharts: one group of bars per broadcast (with its results), a bar per result."""
    return {
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0},
        "grid": {"left": 40, "right": 10, "bottom": 30, "top": 40},
        "xAxis": {"type": "category", "data": [b.name for b, _counts in rows]},
        "yAxis": {"type": "value", "minInterval": 1},
        "series": [
            {
                "name": result,
                "type": "bar",
                "data": [counts[result] for _b, counts in rows],
            }
            for result in RESULTS
        ],
    }


# --- broadcasts ---


@router.get("/messages/broadcasts", response_class=HTMLResponse)
def broadcasts_page(
    request: Request, staff: SignedIn = Depends(page(Permission.MESSAGES_READ))
) -> Response:
    return _broadcasts(request, staff, form={}, problems=[])


def _broadcasts(
    request: Request, staff: SignedIn, *, form: dict[str, str], problems: list[str]
) -> Response:
    with session_scope(readonly=True) as session:
        found = service.list_broadcasts(session, limit=BROADCASTS_SHOWN)
        segment_keys = [s.key for s in segments.list_page(session, cursor=None, limit=200).items]
        template_keys = sorted({t.key for t in service.templates.list_all(session)})
    counted = [(b, results(b.progress)) for b in found]
    return render(
        request,
        "messages/staff/broadcasts.html",
        staff,
        status=422 if problems else 200,
        title="Broadcasts",
        broadcasts=[(b, progress_of(b), counts) for b, counts in counted],
        result_names=list(RESULTS),
        chart=results_chart(counted[::-1]) if found else None,
        segment_keys=segment_keys,
        template_keys=template_keys,
        channels=list(MessageChannel),
        form=form,
        problems=problems,
    )


@router.post("/messages/broadcasts", response_class=HTMLResponse)
def create_broadcast(
    request: Request,
    form: dict[str, str] = Depends(form_fields),
    staff: SignedIn = Depends(page(Permission.MESSAGES_WRITE)),
) -> Response:
    """From the form: segment, template, channel, now or at a time (UTC) → its page."""
    try:
        data = BroadcastCreate(
            name=form.get("name", "").strip() or form.get("template", ""),
            template=form.get("template", ""),
            segment=form.get("segment", ""),
            channel=form.get("channel") or "auto",
            send_at=_send_at(form),
            local_time=form.get("local_time", "").strip() or None,
            throttle_per_minute=int(form["throttle"]) if form.get("throttle", "").strip() else None,
        )
        with session_scope() as session:
            made = service.create_broadcast(session, data)
    except ValidationError as error:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()]
        return _broadcasts(request, staff, form=form, problems=problems)
    except (RegularsError, ValueError) as error:
        message = error.message if isinstance(error, RegularsError) else str(error)
        return _broadcasts(request, staff, form=form, problems=[message])
    return RedirectResponse(f"/messages/broadcasts/{made.id}", status_code=303)


def _send_at(form: dict[str, str]) -> datetime | None:
    """None for now; else the form's date and time, in UTC."""
    if form.get("when") != "later":
        return None
    value = form.get("send_at", "").strip()
    if not value:
        raise ValueError("give the date and time to send at, or choose now")
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{value!r} is not a date and time such as 2026-12-01T09:00") from None


@router.get("/messages/broadcasts/{broadcast_id}", response_class=HTMLResponse)
def broadcast_page(
    request: Request,
    broadcast_id: str,
    staff: SignedIn = Depends(page(Permission.MESSAGES_READ)),
) -> Response:
    with session_scope(readonly=True) as session:
        found = service.get_broadcast(session, broadcast_id)
    if found is None:
        raise NotFound(f"no broadcast {broadcast_id!r}")
    counts = results(found.progress)
    chart = {
        "tooltip": {},
        "grid": {"left": 40, "right": 10, "bottom": 30, "top": 10},
        "xAxis": {"type": "category", "data": list(counts)},
        "yAxis": {"type": "value", "minInterval": 1},
        "series": [{"type": "bar", "data": list(counts.values())}],
    }
    return render(
        request,
        "messages/staff/broadcast.html",
        staff,
        title=found.name,
        broadcast=found,
        progress=progress_of(found),
        results=counts,
        chart=chart,
    )


@router.post("/messages/broadcasts/{broadcast_id}/cancel", response_class=HTMLResponse)
def cancel_broadcast(
    broadcast_id: str, staff: SignedIn = Depends(page(Permission.MESSAGES_WRITE))
) -> Response:
    with session_scope() as session:
        service.cancel_broadcast(session, broadcast_id)
    return RedirectResponse(f"/messages/broadcasts/{broadcast_id}", status_code=303)


# --- deliveries and the sandbox outbox ---


def _choice(value: str, allowed: type[MessageChannel] | type[DeliveryStatus], name: str) -> Any:
    if not value:
        return None
    if value not in set(allowed):
        raise ValueError(f"{value!r} is not a {name}")
    return allowed(value)


def _listing(*, channel: str, status: str = "", cursor: str | None, **query: Any) -> dict[str, Any]:
    """One page of deliveries (`items`, `next_cursor`), or the `problem` with the filters:
    an unknown channel or status, a stale cursor."""
    try:
        with session_scope(readonly=True) as session:
            found = service.list_deliveries(
                session,
                channel=_choice(channel, MessageChannel, "channel"),
                status=_choice(status, DeliveryStatus, "status"),
                cursor=cursor or None,
                limit=PAGE,
                **query,
            )
    except (RegularsError, ValueError) as error:
        problem = error.message if isinstance(error, RegularsError) else str(error)
        return {"items": [], "next_cursor": None, "problem": problem}
    return {"items": found.items, "next_cursor": found.next_cursor, "problem": None}


@router.get("/messages/deliveries", response_class=HTMLResponse)
def deliveries_page(
    request: Request,
    channel: str = "",
    status: str = "",
    provider: str = "",
    customer: str = "",
    template: str = "",
    broadcast: str = "",
    cursor: str | None = None,
    staff: SignedIn = Depends(page(Permission.MESSAGES_READ)),
) -> Response:
    filters = {
        "channel": channel,
        "status": status,
        "provider": provider.strip(),
        "customer": customer.strip(),
        "template": template.strip(),
        "broadcast": broadcast.strip(),
    }
    listing = _listing(
        channel=channel,
        status=status,
        cursor=cursor,
        provider=filters["provider"] or None,
        customer=filters["customer"] or None,
        template=filters["template"] or None,
        broadcast_id=filters["broadcast"] or None,
    )
    return render(
        request,
        "messages/staff/deliveries.html",
        staff,
        status=422 if listing["problem"] else 200,
        title="Deliveries",
        filters=filters,
        filtered=any(filters.values()),
        channels=list(MessageChannel),
        statuses=list(DeliveryStatus),
        **listing,
    )


@router.get("/messages/deliveries/{delivery_id}", response_class=HTMLResponse)
def delivery_page(
    request: Request, delivery_id: str, staff: SignedIn = Depends(page(Permission.MESSAGES_READ))
) -> Response:
    with session_scope(readonly=True) as session:
        found = service.get_delivery(session, delivery_id, with_content=True)
        if found is None:
            raise NotFound(f"no delivery {delivery_id!r}")
        events = service.delivery_events(session, found)
    return render(
        request,
        "messages/staff/delivery.html",
        staff,
        title=f"Delivery {found.id}",
        delivery=found,
        events=events,
        sender=get_settings().email_from,
    )


@router.get("/messages/outbox", response_class=HTMLResponse)
def outbox_page(
    request: Request,
    channel: str = "",
    cursor: str | None = None,
    staff: SignedIn = Depends(page(Permission.MESSAGES_READ)),
) -> Response:
    listing = _listing(channel=channel, cursor=cursor, provider=SANDBOX, with_content=True)
    return render(
        request,
        "messages/staff/outbox.html",
        staff,
        status=422 if listing["problem"] else 200,
        title="Sandbox outbox",
        channel=channel,
        channels=list(MessageChannel),
        **listing,
    )


@router.get("/messages/outbox/{delivery_id}", response_class=HTMLResponse)
def outbox_message(
    request: Request, delivery_id: str, staff: SignedIn = Depends(page(Permission.MESSAGES_READ))
) -> Response:
    with session_scope(readonly=True) as session:
        found = service.get_delivery(session, delivery_id, with_content=True)
    if found is None or found.provider != SANDBOX:
        raise NotFound(f"the sandbox kept no message {delivery_id!r}")
    return render(
        request,
        "messages/staff/outbox_message.html",
        staff,
        title=f"Outbox · {found.channel.value}",
        delivery=found,
        sender=get_settings().email_from,
    )
