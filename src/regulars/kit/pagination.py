"""Opaque cursors for keyset pagination: `{"items": [...], "next_cursor": "..." | null}`."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from regulars.errors import ValidationFailed


def encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """Decode a cursor made by `encode_cursor`; a tampered one is a clear 422."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise ValidationFailed("cursor is not valid: pass next_cursor back unchanged") from exc
    if not isinstance(values, list) or len(values) != arity:
        raise ValidationFailed("cursor is not valid: pass next_cursor back unchanged")
    return values
