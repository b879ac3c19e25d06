"""The sandbox: every channel, nothing leaves the machine. A message counts as delivered at
once, and what would have been sent is the delivery row itself (its rendered content).

`fail_addresses` bounce and `transient_addresses` fail for a retry, so the demo and tests can
show both without a real provider. Addresses compare without regard to case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import Field

from regulars.messages.channels.base import (
    Accepted,
    Outcome,
    Outgoing,
    PermanentError,
    TransientError,
    TransportConfig,
)
from regulars.messages.models import DeliveryStatus, MessageChannel


class SandboxConfig(TransportConfig):
    fail_addresses: list[str] = Field(default_factory=list)
    transient_addresses: list[str] = Field(default_factory=list)


class SandboxTransport:
    kind: ClassVar[str] = "sandbox"
    channels: ClassVar[frozenset[MessageChannel]] = frozenset(MessageChannel)
    Config: ClassVar[type[TransportConfig]] = SandboxConfig

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = SandboxConfig.model_validate(config)
        self._fail = frozenset(address.casefold() for address in self.config.fail_addresses)
        self._transient = frozenset(a.casefold() for a in self.config.transient_addresses)

    def send_many(self, messages: Sequence[Outgoing]) -> list[Outcome]:
        return [self._send(message) for message in messages]

    def close(self) -> None:
        """Nothing to release."""

    def _send(self, message: Outgoing) -> Outcome:
        address = message.address.casefold()
        if address in self._fail:
            return PermanentError(f"sandbox: {message.address} bounces", bounce=True)
        if address in self._transient:
            return TransientError(f"sandbox: {message.address} fails for now")
        return Accepted(
            provider_message_id=f"sandbox-{message.delivery_id}", status=DeliveryStatus.DELIVERED
        )
