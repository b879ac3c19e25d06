"""The fields of each channel's content: what a template author writes (`*Source`, Liquid
inside) and what rendering produces for the transport (`Rendered*`, plain values).

The template API validates a locale's source against its channel's model; unknown fields are
refused, so a typo (`subjet`) is a 422, not a silently empty subject.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from regulars.messages.models import MessageChannel

MAX_FIELD_CHARS = 200_000


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class EmailSource(_Source):
    subject: str = Field(min_length=1, max_length=1000)
    preheader: str = Field(default="", max_length=1000)
    body: str = Field(min_length=1, max_length=MAX_FIELD_CHARS)
    format: Literal["mjml", "html"] = "mjml"


class SmsSource(_Source):
    body: str = Field(min_length=1, max_length=10_000)


class WhatsAppSource(_Source):
    """Free text (`body`) is allowed within 24 hours of the customer's last message; outside
    it WhatsApp only accepts an approved template: its name, language and parameters."""

    body: str = Field(default="", max_length=4096)
    template_name: str = Field(default="", max_length=512)
    template_language: str = Field(default="", max_length=35)
    parameters: list[str] = Field(default_factory=list, max_length=20)


class PushAction(_Source):
    action: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=200)
    url: str = Field(default="", max_length=2048)


class PushSource(_Source):
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=2000)
    icon: str = Field(default="", max_length=2048)
    url: str = Field(default="", max_length=2048)
    actions: list[PushAction] = Field(default_factory=list, max_length=2)


class InAppSource(_Source):
    title: str = Field(min_length=1, max_length=500)
    body: str = Field(default="", max_length=20_000)
    link: str = Field(default="", max_length=2048)


class WebhookSource(_Source):
    """`url` receives a signed JSON POST; `body` is Liquid that must render to a JSON object."""

    url: str = Field(min_length=1, max_length=2048)
    body: str = Field(default="{}", max_length=MAX_FIELD_CHARS)


SOURCE_MODELS: dict[MessageChannel, type[_Source]] = {
    MessageChannel.EMAIL: EmailSource,
    MessageChannel.SMS: SmsSource,
    MessageChannel.WHATSAPP: WhatsAppSource,
    MessageChannel.PUSH: PushSource,
    MessageChannel.INAPP: InAppSource,
    MessageChannel.WEBHOOK: WebhookSource,
}

# Rendered content, as stored on the delivery (`Delivery.content`) and given to transports:
#   email:    {"subject", "preheader", "html", "text"}
#   sms:      {"body", "encoding": "gsm7"|"ucs2", "segments": int}
#   whatsapp: {"body"} inside the 24-hour window, else
#             {"template": {"name", "language", "parameters": [str, ...]}}
#   push:     {"title", "body", "icon", "url", "actions": [{"action", "title", "url"}]}
#   inapp:    {"title", "body", "link"}
#   webhook:  {"url", "payload": {...}}
