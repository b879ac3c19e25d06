"""What comes back after sending: opens, clicks, one-click unsubscribes, provider status
callbacks and inbound replies. Each moves a delivery forward and lands on the timeline.

A delivery only moves forward (sent < delivered < opened < clicked): a late "delivered"
callback after a click changes nothing. Bounces, complaints, failures and unsubscribes are
final outcomes recorded whatever came before.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from regulars.customers import service as customers
from regulars.customers.models import Channel, ConsentStatus
from regulars.customers.schemas import ConsentUpdate
from regulars.kit import clock
from regulars.messages import repository
from regulars.messages.models import PROGRESS, Delivery, DeliveryStatus, MessageChannel
from regulars.messages.sending import timeline_event

_TIMESTAMPS = {
    DeliveryStatus.SENT: "sent_at",
    DeliveryStatus.DELIVERED: "delivered_at",
    DeliveryStatus.OPENED: "opened_at",
    DeliveryStatus.CLICKED: "clicked_at",
}
_FINAL = (
    DeliveryStatus.BOUNCED,
    DeliveryStatus.FAILED,
    DeliveryStatus.COMPLAINED,
    DeliveryStatus.UNSUBSCRIBED,
)


def advance(
    session: Session,
    delivery: Delivery,
    status: DeliveryStatus,
    *,
    at: datetime | None = None,
    reason: str | None = None,
    properties: dict[str, object] | None = None,
) -> bool:
    """Move a delivery to `status` if that is forward; record the event. True if it moved."""
    at = at or clock.now()
    column = _TIMESTAMPS.get(status)
    if column is not None and getattr(delivery, column) is None:
        setattr(delivery, column, at)
    if not _moves(delivery.status, status):
        return False
    delivery.status, delivery.updated_at = status, at
    if reason is not None:
        delivery.reason = reason
    event = timeline_event(
        {
            "id": delivery.id,
            "customer_id": delivery.customer_id,
            "channel": delivery.channel,
            "category": delivery.category,
            "template_key": delivery.template_key,
            "status": status,
            "reason": reason,
            "updated_at": at,
        }
    )
    if properties:
        event.properties.update(properties)
    customers.record_system_events(session, [event])
    session.flush()
    return True


def _moves(current: DeliveryStatus, new: DeliveryStatus) -> bool:
    if new in _FINAL:
        return current not in _FINAL
    if current not in PROGRESS or new not in PROGRESS:
        return False
    return PROGRESS.index(new) > PROGRESS.index(current)


def opened(session: Session, delivery_id: str) -> None:
    delivery = repository.get_delivery(session, delivery_id)
    if delivery is not None:
        advance(session, delivery, DeliveryStatus.OPENED)


def clicked(session: Session, delivery_id: str, url: str) -> None:
    delivery = repository.get_delivery(session, delivery_id)
    if delivery is not None:
        delivery.opened_at = delivery.opened_at or clock.now()  # a click proves the open
        advance(session, delivery, DeliveryStatus.CLICKED, properties={"url": url})


def unsubscribe(session: Session, delivery_id: str, *, source: str) -> Delivery | None:
    """Unsubscribe the recipient from what this message was: its topic when it has one,
    else the whole channel. The consent change is kept in the history with its source."""
    delivery = repository.get_delivery(session, delivery_id)
    if delivery is None or delivery.channel not in _CONSENT_CHANNELS:
        return delivery
    customers.change_consents(
        session,
        delivery.customer_id,
        [
            ConsentUpdate(
                channel=Channel(delivery.channel),
                topic=delivery.topic,
                status=ConsentStatus.UNSUBSCRIBED,
            )
        ],
        source=source,
    )
    advance(session, delivery, DeliveryStatus.UNSUBSCRIBED, reason=f"unsubscribed via {source}")
    return delivery


_CONSENT_CHANNELS = frozenset(
    {MessageChannel.EMAIL, MessageChannel.SMS, MessageChannel.WHATSAPP, MessageChannel.PUSH}
)


def provider_status(
    session: Session,
    provider_message_id: str,
    status: DeliveryStatus,
    *,
    reason: str | None = None,
    bounce: bool = False,
) -> Delivery | None:
    """A provider's status callback: move the delivery; a bounce suppresses the address."""
    delivery = repository.get_by_provider_message(session, provider_message_id)
    if delivery is None:
        return None
    final = DeliveryStatus.BOUNCED if bounce else status
    advance(session, delivery, final, reason=reason)
    if bounce and delivery.address:
        suppress(session, delivery.channel, delivery.address, "hard_bounce", delivery.id)
    return delivery


def suppress(
    session: Session,
    channel: MessageChannel,
    address: str,
    reason: str,
    delivery_id: str | None = None,
) -> None:
    repository.add_suppressions(
        session,
        [
            {
                "channel": channel,
                "address": address,
                "reason": reason,
                "delivery_id": delivery_id,
                "created_at": clock.now(),
            }
        ],
    )


def unsuppress(session: Session, channel: MessageChannel, address: str) -> bool:
    return repository.remove_suppression(session, channel, address) > 0
