"""In-app messages: the dispatcher writes the message into the customer's inbox
(`InboxMessage`) in the database, so there is nothing to send. The transport only answers
that each message is delivered, with the delivery id as its provider message id."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from regulars.messages.channels.base import Accepted, Outcome, Outgoing, TransportConfig
from regulars.messages.models import DeliveryStatus, MessageChannel


class InAppTransport:
    kind: ClassVar[str] = "inapp"
    channels: ClassVar[frozenset[MessageChannel]] = frozenset({MessageChannel.INAPP})
    Config: ClassVar[type[TransportConfig]] = TransportConfig  # no settings

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = TransportConfig.model_validate(config)

    def send_many(self, messages: Sequence[Outgoing]) -> list[Outcome]:
        return [
            Accepted(provider_message_id=message.delivery_id, status=DeliveryStatus.DELIVERED)
            for message in messages
        ]

    def close(self) -> None:
        """Nothing to release."""
