"""One module per channel, one registry: provider kind -> transport class (HC's TRANSPORTS)."""

from __future__ import annotations

from regulars.messages.channels.base import Transport
from regulars.messages.channels.email import SMTPTransport
from regulars.messages.channels.inapp import InAppTransport
from regulars.messages.channels.push import WebPushTransport
from regulars.messages.channels.sandbox import SandboxTransport
from regulars.messages.channels.sms import TwilioSmsTransport
from regulars.messages.channels.webhook import WebhookTransport
from regulars.messages.channels.whatsapp import TwilioWhatsAppTransport

TRANSPORTS: dict[str, type[Transport]] = {
    cls.kind: cls
    for cls in (
        SMTPTransport,
        WebPushTransport,
        TwilioSmsTransport,
        TwilioWhatsAppTransport,
        InAppTransport,
        WebhookTransport,
        SandboxTransport,
    )
}


def transport_class(kind: str) -> type[Transport] | None:
    return TRANSPORTS.get(kind)
