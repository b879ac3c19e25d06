"""SMS length: GSM-7 septets or UCS-2 units, and the segments a carrier splits a text into."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from hypothesis import example, given
from hypothesis import strategies as st

from regulars.messages.sms_text import GSM7_BASIC, GSM7_EXTENSION, measure_sms


def test_160_gsm_characters_fit_one_segment_and_161_need_two() -> None:
    assert measure_sms("a" * 160).segments == 1
    assert measure_sms("a" * 161).segments == 2


def test_long_gsm_texts_are_split_every_153_septets() -> None:
    assert measure_sms("a" * 306).segments == 2
    assert measure_sms("a" * 307).segments == 3
    assert measure_sms("a" * 459).segments == 3
    assert measure_sms("a" * 460).segments == 4


def test_70_ucs2_characters_fit_one_segment_and_71_need_two() -> None:
    assert measure_sms("ж" * 70).segments == 1
    assert measure_sms("ж" * 71).segments == 2
    assert measure_sms("ж" * 134).segments == 2
    assert measure_sms("ж" * 135).segments == 3


def test_one_letter_outside_gsm_makes_the_whole_text_ucs2() -> None:
    measure = measure_sms("a" * 100 + "ж")
    assert measure.encoding == "ucs2"
    assert measure.segments == 2  # 101 units over 70
    assert measure.characters == 101


def test_accented_letters_of_the_gsm_table_stay_gsm7() -> None:
    assert measure_sms("Grüße aus Köln, Ñandù ¿à?").encoding == "gsm7"
    assert measure_sms("à bientôt").encoding == "ucs2"  # ô is not in the table
    assert measure_sms("Ñandú").encoding == "ucs2"  # ù is, ú is not


def test_extension_characters_count_as_two_septets() -> None:
    assert measure_sms("€").units == 2
    assert measure_sms("€" * 80).segments == 1  # 160 septets
    assert measure_sms("€" * 81).segments == 2
    assert measure_sms("{[~]}|^\\").units == 16
    assert measure_sms("€").characters == 1


def test_an_extension_character_is_not_split_between_segments() -> None:
    # 152 + 2 + 152 = 306 septets would fit two segments of 153 if the € could be split.
    text = "a" * 152 + "€" + "a" * 152
    measure = measure_sms(text)
    assert measure.units == 306
    assert measure.segments == 3


def test_characters_outside_the_bmp_count_as_two_units() -> None:
    assert measure_sms("😀").units == 2
    assert measure_sms("😀" * 35).segments == 1
    assert measure_sms("😀" * 36).segments == 2
    assert measure_sms("😀" * 36).characters == 36


def test_an_empty_text_has_no_segment() -> None:
    assert measure_sms("").segments == 0
    assert measure_sms("").encoding == "gsm7"


def test_the_gsm_tables_have_the_sizes_of_gsm_03_38() -> None:
    assert len(GSM7_BASIC) == 127  # 128 codes less the escape to the extension table
    assert len(GSM7_EXTENSION) == 10
    assert "\x1b" not in GSM7_BASIC


# A reference that splits the encoded message itself: the septet stream (an escape septet
# before each extension character) or the UTF-16 code units, cut so that no escape pair and
# no surrogate pair is separated.

ESCAPE = "ESC"
T = TypeVar("T")


def reference_segments(text: str) -> tuple[str, int, int]:
    if all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text):
        septets: list[str] = []
        for char in text:
            septets += [ESCAPE, char] if char in GSM7_EXTENSION else [char]
        return "gsm7", len(septets), _cut(septets, 160, 153, lambda unit: unit == ESCAPE)
    encoded = text.encode("utf-16-be")
    units = [int.from_bytes(encoded[i : i + 2], "big") for i in range(0, len(encoded), 2)]
    return "ucs2", len(units), _cut(units, 70, 67, lambda unit: 0xD800 <= unit <= 0xDBFF)


def _cut(units: Sequence[T], single: int, size: int, opens_pair: Callable[[T], bool]) -> int:
    if len(units) <= single:
        return 1 if units else 0
    count = start = 0
    while start < len(units):
        end = min(start + size, len(units))
        if end < len(units) and opens_pair(units[end - 1]):
            end -= 1
        start, count = end, count + 1
    return count


GSM_TEXT = st.text(alphabet=st.sampled_from(sorted(GSM7_BASIC | GSM7_EXTENSION)), max_size=500)
MIXED_TEXT = st.text(
    alphabet=st.sampled_from(["a", " ", "€", "{", "é", "ж", "😀", "中", "\n"]), max_size=400
)


@given(st.one_of(GSM_TEXT, MIXED_TEXT, st.text(max_size=300)))
@example("a" * 152 + "€" + "a" * 152)  # the € would straddle the end of segment one
@example("ж" * 66 + "😀" + "ж" * 66)  # so would the surrogate pair
def test_segments_match_a_reference_that_cuts_the_encoded_message(text: str) -> None:
    encoding, units, segments = reference_segments(text)
    measure = measure_sms(text)
    assert (measure.encoding, measure.units, measure.segments) == (encoding, units, segments)
    assert measure.characters == len(text)
