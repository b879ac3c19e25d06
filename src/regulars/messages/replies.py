"""Inbound SMS and WhatsApp messages: STOP, START and HELP change consent and are answered;
any other reply is kept on the customer's timeline (`message.received`) for the service
domain to pick up, and opens the 24-hour WhatsApp window for free text."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.customers import service as customers
from regulars.customers.models import Channel, ConsentStatus
from regulars.customers.schemas import ConsentUpdate
from regulars.kit import clock
from regulars.messages import feedback, inbound
from regulars.messages.models import MessageChannel
from regulars.messages.sending import INBOUND_EVENT

SOURCE = "twilio"


@dataclass(frozen=True, slots=True)
class Reply:
    customer_id: str
    keyword: inbound.Keyword
    answer: str  # what to text back (TwiML); "" for nothing


def business_name() -> str:
    """The display name of REGULARS_EMAIL_FROM: how replies name the business."""
    sender = get_settings().email_from
    name = sender.split("<", 1)[0].strip().strip('"')
    return name or "us"


def receive(
    session: Session, *, channel: MessageChannel, phone: str, body: str, message_sid: str
) -> Reply:
    customer_id = _customer_for(session, phone)
    keyword = inbound.classify(body)
    if keyword == inbound.Keyword.STOP:
        _set_consent(session, customer_id, channel, ConsentStatus.UNSUBSCRIBED)
        feedback.suppress(session, channel, phone, "stop")
    elif keyword == inbound.Keyword.START:
        _set_consent(session, customer_id, channel, ConsentStatus.SUBSCRIBED)
        feedback.unsuppress(session, channel, phone)
    customers.record_system_events(
        session,
        [
            customers.SystemEvent(
                customer_id=customer_id,
                name=INBOUND_EVENT,
                properties={
                    "channel": channel.value,
                    "from": phone,
                    "body": body,
                    "keyword": keyword.value,
                    "message_sid": message_sid,
                },
                timestamp=clock.now(),
                key=f"{SOURCE}:{message_sid}",
            )
        ],
    )
    return Reply(customer_id, keyword, inbound.reply_text(keyword, business_name()))


def _customer_for(session: Session, phone: str) -> str:
    """The customer with this number; a new profile when nobody has it yet."""
    found = customers.find_by_phone(session, phone)
    if found is not None:
        return found
    identify = {
        "type": "identify",
        "anonymousId": f"phone:{phone}",
        "traits": {"phone": phone},
        "messageId": f"{SOURCE}:identify:{phone}",
    }
    customers.ingest(session, [identify], source=SOURCE)
    created = customers.find_by_phone(session, phone)
    assert created is not None, "the identify just stored a profile with this phone"
    return created


def _set_consent(
    session: Session, customer_id: str, channel: MessageChannel, status: ConsentStatus
) -> None:
    customers.change_consents(
        session,
        customer_id,
        [ConsentUpdate(channel=Channel(channel.value), topic="", status=status)],
        source=f"{channel.value}_keyword",
    )
