"""Sortable, unguessable identifiers (ULID layout: 48-bit milliseconds + 80 random bits)."""

from __future__ import annotations

import hashlib
import os
import secrets

from regulars.kit import clock

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> str:
    """A 26-character Crockford base32 ULID; ids made later sort after earlier ones."""
    millis = int(clock.now().timestamp() * 1000)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_secret(prefix: str, nbytes: int = 24) -> str:
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
