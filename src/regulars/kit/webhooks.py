"""How regulars signs the webhooks it sends (message webhooks, journey webhook nodes).

    X-Regulars-Timestamp: <unix seconds>
    X-Regulars-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

A receiver recomputes the HMAC over the timestamp header, a ".", and the raw body, compares
in constant time, and refuses timestamps more than five minutes from its own clock so a
captured request cannot be replayed later. `verify_signature` does exactly that.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

SCHEME = "v1"
_TRANSIENT_STATUSES = frozenset({408, 429})


def is_transient(status: int) -> bool:
    """A webhook answer worth retrying: a timeout, rate limit or server error."""
    return status >= 500 or status in _TRANSIENT_STATUSES


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Regulars-Signature value for a body sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: datetime,
    tolerance: int = 300,
) -> bool:
    """True when `signature` signs `body` at `timestamp` with `secret`, and `timestamp` is
    within `tolerance` seconds of `now` (either side)."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs(now.timestamp() - sent_at) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
