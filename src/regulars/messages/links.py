"""The signed links a message carries: open pixel, click redirect, one-click unsubscribe and
the preference centre. Each purpose signs its own token (kit/signing.py)."""

from __future__ import annotations

import functools
import hashlib
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from regulars.config import get_settings
from regulars.errors import RegularsError
from regulars.kit import signing

OPEN = "open"
CLICK = "click"
UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"


def secret() -> str:
    """REGULARS_SECRET_KEY, or in development a key derived from the database URL (stable
    across restarts, so links in sent messages keep working; set the key in production)."""
    settings = get_settings()
    return settings.secret_key or _development_secret(settings.database_url)


@functools.lru_cache(maxsize=8)  # three links a message asked for it
def _development_secret(database_url: str) -> str:
    return hashlib.sha256(f"regulars-dev:{database_url}".encode()).hexdigest()


def _base() -> str:
    return get_settings().public_url.rstrip("/")


def open_url(delivery_id: str) -> str:
    token = signing.sign(secret(), OPEN, {"d": delivery_id}, expires_at=None)
    return f"{_base()}/m/o/{token}.gif"


def click_url(delivery_id: str, url: str) -> str:
    token = signing.sign(secret(), CLICK, {"d": delivery_id, "u": url}, expires_at=None)
    return f"{_base()}/m/c/{token}"


def unsubscribe_url(delivery_id: str) -> str:
    """RFC 8058 one-click target; never expires (an unsubscribe must always work)."""
    token = signing.sign(secret(), UNSUBSCRIBE, {"d": delivery_id}, expires_at=None)
    return f"{_base()}/m/u/{token}"


def unsubscribe_mailto(delivery_id: str) -> str:
    settings = get_settings()
    mailbox = settings.unsubscribe_mailto or _default_mailbox(settings.email_from)
    return f"mailto:{mailbox}?subject={quote('unsubscribe ' + delivery_id)}"


def _default_mailbox(email_from: str) -> str:
    address = email_from.rsplit("<", 1)[-1].rstrip(">").strip()
    return "unsubscribe@" + address.rsplit("@", 1)[-1]


def preferences_url(customer_id: str, *, now: datetime) -> str:
    ttl = timedelta(days=get_settings().link_ttl_days)
    token = signing.sign(secret(), PREFERENCES, {"c": customer_id}, expires_at=now + ttl)
    return f"{_base()}/m/p/{token}"


def read(purpose: str, token: str, *, now: datetime) -> dict[str, Any]:
    """The values signed in a token of this purpose; 403 tampered, 410 expired."""
    return signing.verify(secret(), purpose, token, now=now)


def read_str(values: dict[str, Any], key: str) -> str:
    value = values.get(key)
    if not isinstance(value, str):
        raise RegularsError("this link is not valid", code="link_invalid", status=403)
    return value
