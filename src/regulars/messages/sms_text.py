"""How long an SMS is: its encoding and how many segments a carrier bills for it.

GSM-7 (GSM 03.38) when every character is in the basic set or its extension table, else
UCS-2. One segment holds 160 septets or 70 UTF-16 code units; a message that needs more is
split into segments of 153 septets or 67 units (the rest of each is the concatenation
header). An extension character (`€ { } [ ] ~ \\ | ^` and form feed) is an escape plus a
septet and a character outside the BMP is a surrogate pair: neither is split between two
segments, so a segment may carry one unit less than its capacity. National language shift
tables (Turkish, Spanish, Portuguese) are not used: their letters make a message UCS-2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["gsm7", "ucs2"]

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

# (units in a single-segment message, units per segment of a longer one)
_CAPACITY: dict[Encoding, tuple[int, int]] = {"gsm7": (160, 153), "ucs2": (70, 67)}


@dataclass(frozen=True, slots=True)
class SmsMeasure:
    encoding: Encoding
    segments: int  # 0 for an empty text
    characters: int  # code points, as a person counts them
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2): what the limits count


def measure_sms(text: str) -> SmsMeasure:
    """The encoding a text needs and the number of segments it is sent in."""
    encoding: Encoding = "gsm7"
    for char in text:
        if char not in GSM7_BASIC and char not in GSM7_EXTENSION:
            encoding = "ucs2"
            break
    sizes = [_size(char, encoding) for char in text]
    units = sum(sizes)
    single, per_segment = _CAPACITY[encoding]
    segments = _pack(sizes, per_segment) if units > single else min(units, 1)
    return SmsMeasure(encoding=encoding, segments=segments, characters=len(text), units=units)


def _size(char: str, encoding: Encoding) -> int:
    if encoding == "gsm7":
        return 2 if char in GSM7_EXTENSION else 1
    return 2 if ord(char) > 0xFFFF else 1


def _pack(sizes: list[int], capacity: int) -> int:
    """Segments needed when characters fill segments in order and none is split."""
    segments, used = 1, 0
    for size in sizes:
        if used + size > capacity:
            segments, used = segments + 1, 0
        used += size
    return segments
