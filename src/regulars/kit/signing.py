"""Signed, expiring tokens for links sent to customers (unsubscribe, preferences, tracking).

A token is `<payload>.<signature>`: the payload is compact JSON in base64url, the signature
an HMAC-SHA256 over the payload and a purpose, so a token made for opening a pixel cannot
unsubscribe anybody. Expiry (`exp`, Unix seconds) is inside the signed payload.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from regulars.errors import RegularsError


class LinkInvalid(RegularsError):
    code = "link_invalid"
    status = 403


class LinkExpired(RegularsError):
    code = "link_expired"
    status = 410


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: str, payload: str) -> str:
    message = f"{purpose}.{payload}".encode()
    return _b64(hmac.digest(secret.encode(), message, "sha256")[:20])


def sign(
    secret: str, purpose: str, values: Mapping[str, Any], *, expires_at: datetime | None
) -> str:
    body = dict(values)
    if expires_at is not None:
        body["exp"] = int(expires_at.timestamp())
    payload = _b64(orjson.dumps(body))
    return f"{payload}.{_mac(secret, purpose, payload)}"


def verify(secret: str, purpose: str, token: str, *, now: datetime) -> dict[str, Any]:
    """The signed values; LinkInvalid (403) when tampered with, LinkExpired (410) when old."""
    payload, _, signature = token.partition(".")
    if not signature or not hmac.compare_digest(signature, _mac(secret, purpose, payload)):
        raise LinkInvalid("this link is not valid: use the link exactly as it was sent")
    try:
        values = orjson.loads(_unb64(payload))
    except (binascii.Error, ValueError) as exc:
        raise LinkInvalid("this link is not valid: use the link exactly as it was sent") from exc
    if not isinstance(values, dict):
        raise LinkInvalid("this link is not valid: use the link exactly as it was sent")
    expires = values.pop("exp", None)
    if isinstance(expires, int) and now.timestamp() >= expires:
        raise LinkExpired("this link has expired: use the link in a newer message")
    return values
