"""Providers: which service carries each channel, in fail-over order. A channel without an
enabled provider sends through the sandbox (the development and demo default)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.errors import NotFound, ValidationFailed
from regulars.kit import clock
from regulars.messages import repository
from regulars.messages.channels import TRANSPORTS, transport_class
from regulars.messages.models import Provider
from regulars.messages.schemas import ProviderRead, ProviderWrite

SECRET_FIELDS = ("password", "auth_token", "secret", "vapid_private_key", "token", "api_key")


def save(session: Session, name: str, data: ProviderWrite) -> ProviderRead:
    """Create or replace a provider; its kind must serve the channel and its config must be
    what the kind expects (a 422 names the field)."""
    cls = transport_class(data.kind)
    if cls is None:
        known = ", ".join(sorted(TRANSPORTS))
        raise ValidationFailed(f"unknown provider kind {data.kind!r}; known: {known}")
    if data.channel not in cls.channels:
        raise ValidationFailed(f"a {data.kind} provider cannot carry {data.channel.value}")
    try:
        cls.Config.model_validate(effective_config(name, data.kind, data.config))
    except ValidationError as exc:
        details = [
            {"loc": ["config", *map(str, e["loc"])], "message": e["msg"]} for e in exc.errors()
        ]
        first = details[0]
        raise ValidationFailed(
            f"{'.'.join(first['loc'])}: {first['message']}", details=details
        ) from exc
    now = clock.now()
    provider = repository.get_provider(session, name)
    if provider is None:
        provider = Provider(name=name, created_at=now)
        session.add(provider)
    provider.channel, provider.kind, provider.config = data.channel, data.kind, data.config
    provider.priority, provider.enabled = data.priority, data.enabled
    provider.rate_per_second, provider.updated_at = data.rate_per_second, now
    session.flush()
    return read(provider)


def effective_config(name: str, kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The config a transport gets: settings fill what a provider's config may leave out
    (Twilio reports delivery status to our webhook, web push signs with the instance's
    VAPID key)."""
    settings = get_settings()
    filled = dict(config)
    if kind.startswith("twilio") and not filled.get("status_callback_url"):
        base = settings.public_url.rstrip("/")
        filled["status_callback_url"] = f"{base}/webhooks/twilio/{name}/status"
    if kind == "webpush":
        filled.setdefault("vapid_private_key", settings.vapid_private_key)
        filled.setdefault("vapid_subject", settings.vapid_subject)
    return filled


def read(provider: Provider) -> ProviderRead:
    return ProviderRead(
        name=provider.name,
        channel=provider.channel,
        kind=provider.kind,
        priority=provider.priority,
        enabled=provider.enabled,
        rate_per_second=provider.rate_per_second,
        config=masked(provider.config),
    )


def masked(config: dict[str, Any]) -> dict[str, Any]:
    return {
        key: "********" if any(s in key for s in SECRET_FIELDS) and value else value
        for key, value in config.items()
    }


def list_all(session: Session) -> list[ProviderRead]:
    return [read(p) for p in repository.list_providers(session)]


def delete(session: Session, name: str) -> None:
    provider = repository.get_provider(session, name)
    if provider is None:
        raise NotFound(f"no provider {name!r}")
    session.delete(provider)
    session.flush()


def get(session: Session, name: str) -> Provider | None:
    return repository.get_provider(session, name)
