"""The demo store's messages: templates for every channel in English and German, order
confirmations for the latest orders, and last week's newsletter with its opens and clicks.

Everything goes through the sandbox (no provider is configured), so the outbox shows what
each customer would have received; `regulars deliveries list --provider sandbox`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from regulars.customers import service as customers
from regulars.kit import clock
from regulars.messages import service as messages
from regulars.messages.models import Category, MessageChannel
from regulars.messages.schemas import BroadcastCreate, TemplateWrite

EMAIL_SHELL = """<mjml>
  <mj-head>
    <mj-attributes><mj-all font-family="Helvetica, Arial, sans-serif" /></mj-attributes>
    <mj-style>.footer a {{ color: #8a8a8a; }}</mj-style>
  </mj-head>
  <mj-body background-color="#f4f1ec">
    <mj-section background-color="#3b2a20"><mj-column>
      <mj-text color="#f4f1ec" font-size="20px" font-weight="bold">Lantern Coffee Roasters</mj-text>
    </mj-column></mj-section>
    <mj-section background-color="#ffffff"><mj-column>
{body}
    </mj-column></mj-section>
    <mj-section><mj-column>
      <mj-text css-class="footer" color="#8a8a8a" font-size="12px">{footer}</mj-text>
    </mj-column></mj-section>
  </mj-body>
</mjml>"""

FOOTER = {
    "en": '<a href="{{ links.preferences }}">Email preferences</a> · '
    '<a href="{{ links.unsubscribe }}">Unsubscribe</a>',
    "de": '<a href="{{ links.preferences }}">E-Mail-Einstellungen</a> · '
    '<a href="{{ links.unsubscribe }}">Abmelden</a>',
}


def _email(subject: str, preheader: str, body: str, locale: str) -> dict[str, Any]:
    mjml = EMAIL_SHELL.format(body=body, footer=FOOTER[locale])
    return {"subject": subject, "preheader": preheader, "body": mjml, "format": "mjml"}


NEWSLETTER_EN = """      <mj-text font-size="22px">New in: the winter roasts</mj-text>
      <mj-text>Hi {{ customer.first_name | default: "there" }}, our Ethiopian Guji and a dark
        Sumatra holiday blend are out of the roaster this week.</mj-text>
      <mj-button background-color="#c8553d" href="https://lantern.example/winter">
        Taste them</mj-button>"""
NEWSLETTER_DE = """      <mj-text font-size="22px">Neu: die Winterröstungen</mj-text>
      <mj-text>Hallo {{ customer.first_name | default: "du" }}, unser äthiopischer Guji
        und eine dunkle Sumatra-Festtagsmischung sind diese Woche frisch aus dem Röster.
      </mj-text>
      <mj-button background-color="#c8553d" href="https://lantern.example/de/winter">
        Jetzt probieren</mj-button>"""
ORDER_EN = """      <mj-text font-size="20px">Thank you for your order {{ event.order_id }}
      </mj-text>
      <mj-text>Hi {{ customer.first_name | default: "there" }}, we are roasting your coffee
        now. Total: {{ event.revenue | money: event.currency }}.</mj-text>"""
ORDER_DE = """      <mj-text font-size="20px">Danke für deine Bestellung {{ event.order_id }}
      </mj-text>
      <mj-text>Hallo {{ customer.first_name | default: "du" }}, wir rösten deinen Kaffee
        gerade. Summe: {{ event.revenue | money: event.currency }}.</mj-text>"""

TEMPLATES: tuple[tuple[str, MessageChannel, TemplateWrite], ...] = (
    (
        "newsletter",
        MessageChannel.EMAIL,
        TemplateWrite(
            name="Monthly newsletter",
            category=Category.MARKETING,
            topic="newsletter",
            locales={
                "en": _email("New in: the winter roasts", "Two new coffees", NEWSLETTER_EN, "en"),
                "de": _email("Neu: die Winterröstungen", "Zwei neue Kaffees", NEWSLETTER_DE, "de"),
            },
        ),
    ),
    (
        "newsletter",
        MessageChannel.PUSH,
        TemplateWrite(
            name="Monthly newsletter",
            category=Category.MARKETING,
            locales={
                "en": {
                    "title": "The winter roasts are here",
                    "url": "https://lantern.example/winter",
                },
                "de": {
                    "title": "Die Winterröstungen sind da",
                    "url": "https://lantern.example/de/winter",
                },
            },
        ),
    ),
    (
        "newsletter",
        MessageChannel.INAPP,
        TemplateWrite(
            name="Monthly newsletter",
            category=Category.MARKETING,
            locales={
                "en": {
                    "title": "New: winter roasts",
                    "body": "Guji and a Sumatra blend.",
                    "link": "https://lantern.example/winter",
                },
                "de": {
                    "title": "Neu: Winterröstungen",
                    "body": "Guji und eine Sumatra-Mischung.",
                    "link": "https://lantern.example/de/winter",
                },
            },
        ),
    ),
    (
        "order_confirmed",
        MessageChannel.EMAIL,
        TemplateWrite(
            name="Order confirmation",
            locales={
                "en": _email(
                    "Order {{ event.order_id }} confirmed", "We are roasting it now", ORDER_EN, "en"
                ),
                "de": _email(
                    "Bestellung {{ event.order_id }} bestätigt", "Wir rösten gerade", ORDER_DE, "de"
                ),
            },
        ),
    ),
    (
        "order_confirmed",
        MessageChannel.SMS,
        TemplateWrite(
            name="Order confirmation",
            locales={
                "en": {
                    "body": "Lantern Coffee: order {{ event.order_id }} confirmed, "
                    "{{ event.revenue | money: event.currency }}. Thank you!"
                },
                "de": {
                    "body": "Lantern Coffee: Bestellung {{ event.order_id }} bestätigt, "
                    "{{ event.revenue | money: event.currency }}. Danke!"
                },
            },
        ),
    ),
    (
        "order_shipped",
        MessageChannel.WHATSAPP,
        TemplateWrite(
            name="Order shipped",
            locales={
                "en": {
                    "body": "Your order {{ event.order_id }} is on its way!",
                    "template_name": "HXb5b62575e6e4ff6129ad7c8efe1f983e",
                    "template_language": "en",
                    "parameters": [
                        "{{ customer.first_name | default: 'there' }}",
                        "{{ event.order_id }}",
                    ],
                },
                "de": {
                    "body": "Deine Bestellung {{ event.order_id }} ist unterwegs!",
                    "template_name": "HXb5b62575e6e4ff6129ad7c8efe1f983e",
                    "template_language": "de",
                    "parameters": [
                        "{{ customer.first_name | default: 'du' }}",
                        "{{ event.order_id }}",
                    ],
                },
            },
        ),
    ),
    (
        "order_shipped",
        MessageChannel.WEBHOOK,
        TemplateWrite(
            name="Order shipped, to the warehouse system",
            locales={
                "en": {
                    "url": "https://erp.lantern.example/hooks/shipped",
                    "body": '{"order_id": "{{ event.order_id }}", "customer": "{{ customer.id }}"}',
                }
            },
        ),
    ),
)

NEWSLETTER_SEGMENT = "newsletter-subscribers"  # one of demo.service.DEMO_SEGMENTS


@dataclass(slots=True)
class MessagesSummary:
    templates: int = 0
    confirmations: int = 0
    newsletter: dict[str, int] | None = None


Order = tuple[datetime, str, dict[str, Any]]  # when, userId, properties


def load(session: Session, *, seed: int, now: datetime, orders: Sequence[Order]) -> MessagesSummary:
    """Templates, order confirmations for `orders` ((userId, properties) of the latest
    orders), and a newsletter sent a week before `now`, with opens and clicks after it."""
    summary = MessagesSummary()
    for key, channel, template in TEMPLATES:
        messages.templates.save(session, key, channel, template)
        summary.templates += 1
    summary.confirmations = _confirm_orders(session, orders)
    summary.newsletter = _past_newsletter(session, random.Random(seed), now=now)
    return summary


def _confirm_orders(session: Session, orders: Sequence[Order]) -> int:
    """Each confirmation sent a minute after its order, on the customer's channel."""
    sent = 0
    for at, user_id, properties in sorted(orders, key=lambda order: order[0]):
        customer_id = customers.find_by_identity(session, user_id=user_id, anonymous_id=None)
        if customer_id is None:
            continue
        with clock.frozen(at + timedelta(minutes=1)):
            messages.send(
                session,
                messages.SendRequest(
                    customer_id=customer_id,
                    template="order_confirmed",
                    event=properties,
                    idempotency_key=f"demo:order_confirmed:{properties['order_id']}",
                ),
            )
            _deliver_everything(session)
        sent += 1
    return sent


def _past_newsletter(session: Session, rng: random.Random, *, now: datetime) -> dict[str, int]:
    sent_at = now - timedelta(days=7)
    with clock.frozen(sent_at) as frozen:
        broadcast = messages.create_broadcast(
            session,
            BroadcastCreate(
                name="Winter roasts newsletter",
                template="newsletter",
                segment=NEWSLETTER_SEGMENT,
                channel=MessageChannel.EMAIL,
            ),
        )
        while messages.expand_broadcast(session, broadcast.id):
            pass
        _deliver_everything(session)
        _reactions(session, rng, broadcast.id, frozen)
    found = messages.get_broadcast(session, broadcast.id)
    return found.progress if found is not None else {}


def _reactions(session: Session, rng: random.Random, broadcast_id: str, frozen: Any) -> None:
    """About 45% open over the next two days, a fifth of them click, a few unsubscribe."""
    page = messages.list_deliveries(session, broadcast_id=broadcast_id, limit=5000)
    for delivery in page.items:
        draw = rng.random()
        if draw < 0.45:
            frozen.set(delivery.created_at + timedelta(hours=rng.uniform(0.1, 48)))
            messages.feedback.opened(session, delivery.id)
            if draw < 0.09:
                url = "https://lantern.example/winter"
                messages.feedback.clicked(session, delivery.id, url)
        elif draw > 0.993:
            messages.feedback.unsubscribe(session, delivery.id, source="one_click")


def _deliver_everything(session: Session) -> None:
    """What the worker would do, in this session: rounds until nothing is due."""
    while messages.deliver_round(session, worker_id="demo", now=clock.now()):
        pass
