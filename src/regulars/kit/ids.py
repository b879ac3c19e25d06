"""Sortable, unguessable identifiers (ULID layout: 48-bit milliseconds + 80 random bits)."""

from __future__ import annotations

import hashlib
import os
import random
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from regulars.kit import clock

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> str:
    """A 26-character Crockford base32 ULID; ids made later sort after earlier ones."""
    millis = int(clock.now().timestamp() * 1000)
    bits = _seeded.getrandbits(80) if _seeded is not None else int.from_bytes(os.urandom(10))
    return _encoded((millis << 80) | bits)


def id_floor(at: datetime) -> str:
    """The smallest id `new_id` makes at `at` or later: ids made in [a, b) are the key range
    [id_floor(a), id_floor(b)), so a table keyed by these ids is also indexed by time."""
    return _encoded(int(at.timestamp() * 1000) << 80)


# Two characters (10 bits) at a time: half the time of a loop over 26 characters.
_PAIRS = [_ALPHABET[bits >> 5] + _ALPHABET[bits & 31] for bits in range(1024)]


def _encoded(value: int) -> str:
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(120, -1, -10)])


_seeded: random.Random | None = None


@contextmanager
def repeatable(seed: str) -> Iterator[None]:
    """Within it, the random part of `new_id` comes from `random.Random(seed)`: under a frozen
    clock the same work makes the same ids, and whatever is drawn from an id (a journey's
    holdout) comes out the same (`regulars simulate`). One thread only; secrets stay random."""
    global _seeded
    previous, _seeded = _seeded, random.Random(seed)
    try:
        yield
    finally:
        _seeded = previous


def new_secret(prefix: str, nbytes: int = 24) -> str:
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
