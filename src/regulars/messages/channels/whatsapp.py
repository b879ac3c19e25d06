"""WhatsApp through Twilio (`twilio_whatsapp`). Addresses go as `whatsapp:+E164`.

Within 24 hours of the customer's last message the rendered `body` is sent as free text.
Outside it WhatsApp only takes an approved template; on Twilio that is a Content API template,
so a WhatsApp template's `template_name` is its approved Content SID (`HX` and 32 hex
digits), and its parameters become the numbered ContentVariables {"1": ..., "2": ...}. The
Content SID already names one language, so `template_language` is not sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from regulars.messages.channels.base import Outgoing, PermanentError
from regulars.messages.channels.twilio import CONTENT_SID, ContentTemplate, TwilioTransport
from regulars.messages.models import MessageChannel


class TwilioWhatsAppTransport(TwilioTransport):
    kind: ClassVar[str] = "twilio_whatsapp"
    channels: ClassVar[frozenset[MessageChannel]] = frozenset({MessageChannel.WHATSAPP})
    whatsapp: ClassVar[bool] = True

    def content_of(self, message: Outgoing) -> str | ContentTemplate | PermanentError:
        return whatsapp_content(message.content)


def whatsapp_content(content: Mapping[str, Any]) -> str | ContentTemplate | PermanentError:
    """A free-text body, or the Content template for {"template": {name, parameters}}."""
    template = content.get("template")
    if isinstance(template, Mapping):
        return _content_template(template)
    body = content.get("body")
    if not isinstance(body, str) or not body.strip():
        return PermanentError("whatsapp content has neither a body nor a template")
    return body


def _content_template(template: Mapping[str, Any]) -> ContentTemplate | PermanentError:
    name = template.get("name")
    if not isinstance(name, str) or not CONTENT_SID.fullmatch(name):
        return PermanentError(
            f"whatsapp template name {name!r} is not a Twilio Content SID: on Twilio the"
            " template name is the approved template's SID, HX followed by 32 hex digits"
        )
    parameters = template.get("parameters") or []
    if not isinstance(parameters, list):
        return PermanentError("whatsapp template parameters are not a list")
    return ContentTemplate(sid=name, variables=tuple(str(value) for value in parameters))
