"""REST API of the messages domain: templates, messages, deliveries, broadcasts, providers
and the in-app inbox.

Reads and previews need scope read; sending, saving and cancelling need scope write;
providers (credentials) need scope admin.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Response

from regulars.db import session_scope
from regulars.errors import NotFound
from regulars.identity.api import Caller, require
from regulars.identity.roles import Permission
from regulars.messages import service
from regulars.messages.models import DeliveryStatus, MessageChannel
from regulars.messages.schemas import (
    KEY_PATTERN,
    BroadcastCreate,
    BroadcastRead,
    DeliveryPage,
    DeliveryRead,
    InboxPage,
    InboxRead,
    MessageCreate,
    PreviewRead,
    PreviewRequest,
    ProviderRead,
    ProviderWrite,
    TemplateRead,
    TemplateVersionRead,
    TemplateWrite,
)

router = APIRouter(prefix="/api", tags=["messages"])

can_read = require(Permission.MESSAGES_READ)
can_write = require(Permission.MESSAGES_WRITE)
can_send = require(Permission.MESSAGES_SEND)
can_write_customers = require(Permission.CUSTOMERS_WRITE)
can_admin = require(Permission.SETTINGS_MANAGE)
MAX_LIMIT = 200


# --- templates ---


@router.get("/templates", response_model=list[TemplateRead], summary="Every template")
def list_templates(_caller: Caller = Depends(can_read)) -> list[TemplateRead]:
    with session_scope(readonly=True) as session:
        return service.templates.list_all(session)


TemplateKey = Path(pattern=KEY_PATTERN, description="the template's purpose, e.g. order_shipped")


@router.put(
    "/templates/{key}/{channel}", response_model=TemplateRead, summary="Save a template version"
)
def save_template(
    channel: MessageChannel,
    data: TemplateWrite,
    key: str = TemplateKey,
    _caller: Caller = Depends(can_write),
) -> TemplateRead:
    """Creates the template or saves a new version. Content with a Liquid syntax error, an
    MJML error or an unknown field is refused (422) with the locale, field, line and column."""
    with session_scope() as session:
        return service.templates.save(session, key, channel, data)


@router.get("/templates/{key}/{channel}", response_model=TemplateRead, summary="One template")
def get_template(
    channel: MessageChannel, key: str = TemplateKey, _caller: Caller = Depends(can_read)
) -> TemplateRead:
    with session_scope(readonly=True) as session:
        found = service.templates.get(session, key, channel)
        if found is None:
            raise NotFound(f"no {channel.value} template {key!r}")
        return found


@router.get(
    "/templates/{key}/{channel}/versions",
    response_model=list[TemplateVersionRead],
    summary="Every version of a template",
)
def template_versions(
    channel: MessageChannel, key: str = TemplateKey, _caller: Caller = Depends(can_read)
) -> list[TemplateVersionRead]:
    with session_scope(readonly=True) as session:
        return service.templates.versions(session, key, channel)


@router.delete("/templates/{key}/{channel}", status_code=204, summary="Delete a template")
def delete_template(
    channel: MessageChannel, key: str = TemplateKey, _caller: Caller = Depends(can_write)
) -> Response:
    with session_scope() as session:
        service.templates.delete(session, key, channel)
    return Response(status_code=204)


@router.post(
    "/templates/{key}/preview", response_model=PreviewRead, summary="Render for one customer"
)
def preview_template(
    data: PreviewRequest, key: str = TemplateKey, _caller: Caller = Depends(can_read)
) -> PreviewRead:
    """Renders the template as the customer would receive it, with the policy verdict
    (send, defer to a moment, or refuse with the reason). Nothing is stored or sent."""
    with session_scope(readonly=True) as session:
        if data.channel != "auto":
            channel = MessageChannel(data.channel)
            if service.templates.get(session, key, channel) is None:
                raise NotFound(
                    f"no {channel.value} template {key!r}",
                    details={"template": key, "channel": channel.value},
                )
        return service.preview(session, key, data)


# --- messages and deliveries ---


@router.post("/messages", response_model=DeliveryRead, status_code=201, summary="Send a message")
def send_message(data: MessageCreate, _caller: Caller = Depends(can_send)) -> DeliveryRead:
    """Queues one message. The answer is its delivery: `queued`, `deferred` (quiet hours),
    or `suppressed` / `expired` / `failed` with the reason. The same idempotency key answers
    the first delivery again and sends nothing new."""
    with session_scope() as session:
        return service.send_message(session, data)


@router.get("/deliveries", response_model=DeliveryPage, summary="Deliveries, newest first")
def list_deliveries(
    customer: str | None = Query(None, description="id, external id or email"),
    channel: MessageChannel | None = None,
    status: DeliveryStatus | None = None,
    broadcast: str | None = None,
    provider: str | None = Query(None, description="e.g. sandbox: the sandbox outbox"),
    content: bool = Query(False, description="include each rendered message"),
    cursor: str | None = None,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    _caller: Caller = Depends(can_read),
) -> DeliveryPage:
    with session_scope(readonly=True) as session:
        return service.list_deliveries(
            session,
            customer=customer,
            channel=channel,
            status=status,
            broadcast_id=broadcast,
            provider=provider,
            cursor=cursor,
            limit=limit,
            with_content=content,
        )


@router.get("/deliveries/{delivery_id}", response_model=DeliveryRead, summary="One delivery")
def get_delivery(delivery_id: str, _caller: Caller = Depends(can_read)) -> DeliveryRead:
    with session_scope(readonly=True) as session:
        found = service.get_delivery(session, delivery_id, with_content=True)
        if found is None:
            raise NotFound(f"no delivery {delivery_id!r}")
        return found


# --- broadcasts ---


@router.get("/broadcasts", response_model=list[BroadcastRead], summary="Recent broadcasts")
def list_broadcasts(
    limit: int = Query(50, ge=1, le=MAX_LIMIT), _caller: Caller = Depends(can_read)
) -> list[BroadcastRead]:
    with session_scope(readonly=True) as session:
        return service.list_broadcasts(session, limit=limit)


@router.post(
    "/broadcasts", response_model=BroadcastRead, status_code=201, summary="Send to a segment"
)
def create_broadcast(data: BroadcastCreate, _caller: Caller = Depends(can_write)) -> BroadcastRead:
    """Now or at `send_at`; with `local_time` each customer gets it at that time of day in
    their own time zone; `throttle_per_minute` spreads the deliveries."""
    with session_scope() as session:
        return service.create_broadcast(session, data)


@router.get("/broadcasts/{broadcast_id}", response_model=BroadcastRead, summary="Progress")
def get_broadcast(broadcast_id: str, _caller: Caller = Depends(can_read)) -> BroadcastRead:
    with session_scope(readonly=True) as session:
        found = service.get_broadcast(session, broadcast_id)
        if found is None:
            raise NotFound(f"no broadcast {broadcast_id!r}")
        return found


@router.post("/broadcasts/{broadcast_id}/cancel", response_model=BroadcastRead, summary="Cancel")
def cancel_broadcast(broadcast_id: str, _caller: Caller = Depends(can_write)) -> BroadcastRead:
    """Stops queueing members and cancels every delivery not yet handed to a provider."""
    with session_scope() as session:
        return service.cancel_broadcast(session, broadcast_id)


# --- providers ---


@router.get("/providers", response_model=list[ProviderRead], summary="Channel providers")
def list_providers(_caller: Caller = Depends(can_admin)) -> list[ProviderRead]:
    with session_scope(readonly=True) as session:
        return service.providers.list_all(session)


@router.put("/providers/{name}", response_model=ProviderRead, summary="Save a provider")
def save_provider(
    data: ProviderWrite,
    name: str = Path(pattern=KEY_PATTERN),
    _caller: Caller = Depends(can_admin),
) -> ProviderRead:
    """The enabled providers of a channel, by priority (lowest first), are its fail-over
    order; a channel with none sends to the sandbox."""
    with session_scope() as session:
        return service.providers.save(session, name, data)


@router.delete("/providers/{name}", status_code=204, summary="Remove a provider")
def delete_provider(name: str, _caller: Caller = Depends(can_admin)) -> Response:
    with session_scope() as session:
        service.providers.delete(session, name)
    return Response(status_code=204)


# --- in-app inbox ---


@router.get("/customers/{customer}/inbox", response_model=InboxPage, summary="A customer's inbox")
def get_inbox(
    customer: str,
    cursor: str | None = None,
    limit: int = Query(20, ge=1, le=MAX_LIMIT),
    _caller: Caller = Depends(can_read),
) -> InboxPage:
    with session_scope(readonly=True) as session:
        customer_id = service.require_customer(session, customer)
        return service.inbox.page(session, customer_id, cursor=cursor, limit=limit)


@router.post("/customers/{customer}/inbox/read", response_model=InboxPage, summary="Mark as read")
def read_inbox(
    customer: str, data: InboxRead, _caller: Caller = Depends(can_write_customers)
) -> InboxPage:
    """Marks the given messages read (all of them without `ids`); answers the first page."""
    with session_scope() as session:
        customer_id = service.require_customer(session, customer)
        service.inbox.mark_read(session, customer_id, data.ids)
        return service.inbox.page(session, customer_id, cursor=None, limit=20)
