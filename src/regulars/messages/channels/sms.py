"""SMS through Twilio (`twilio_sms`): the rendered body goes as-is; Twilio splits it into the
segments messages/content.py counted. The HTTP call and its errors live in twilio.py."""

from __future__ import annotations

from typing import ClassVar

from regulars.messages.channels.base import Outgoing, PermanentError
from regulars.messages.channels.twilio import ContentTemplate, TwilioTransport
from regulars.messages.models import MessageChannel


class TwilioSmsTransport(TwilioTransport):
    kind: ClassVar[str] = "twilio_sms"
    channels: ClassVar[frozenset[MessageChannel]] = frozenset({MessageChannel.SMS})

    def content_of(self, message: Outgoing) -> str | ContentTemplate | PermanentError:
        body = message.content.get("body")
        if not isinstance(body, str) or not body.strip():
            return PermanentError("sms content has no body")
        return body
