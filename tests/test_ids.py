"""Ids: the ULID layout (Crockford base32 of 48-bit milliseconds and 80 random bits)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from regulars.kit import clock, ids

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def by_division(value: int) -> str:
    """The reference: 26 base-32 digits by repeated division, most significant first."""
    digits = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        digits.append(CROCKFORD[digit])
    return "".join(reversed(digits))


def test_the_smallest_and_largest_ulids() -> None:
    assert ids.id_floor(datetime(1970, 1, 1, tzinfo=UTC)) == "0" * 26
    largest = ids._encoded(2**128 - 1)
    assert largest == "7" + "Z" * 25  # the largest ULID the specification allows


@given(st.integers(min_value=0, max_value=2**128 - 1))
def test_encoding_matches_division(value: int) -> None:
    assert ids._encoded(value) == by_division(value)


def test_an_id_carries_its_millisecond() -> None:
    at = datetime(2026, 3, 2, 10, 0, 0, 123000, tzinfo=UTC)
    with clock.frozen(at):
        made = ids.new_id()
    millis = int(at.timestamp() * 1000)
    assert made[:10] == by_division(millis << 80)[:10]
    assert (
        ids.id_floor(at) <= made < ids.id_floor(datetime(2026, 3, 2, 10, 0, 0, 124000, tzinfo=UTC))
    )
