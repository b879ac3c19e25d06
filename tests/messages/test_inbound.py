"""Keyword classification of inbound replies, the confirmation texts and their TwiML."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regulars.messages.inbound import Keyword, classify, reply_text, twiml_message

TWILIO_DEFAULTS = {
    Keyword.STOP: ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"],
    Keyword.START: ["START", "YES", "UNSTOP"],
    Keyword.HELP: ["HELP", "INFO"],
}


@pytest.mark.parametrize(
    ("word", "keyword"),
    [(word, keyword) for keyword, words in TWILIO_DEFAULTS.items() for word in words],
)
def test_twilios_default_keywords(word: str, keyword: Keyword) -> None:
    assert classify(word) is keyword


@pytest.mark.parametrize(
    ("body", "keyword"),
    [
        ("stop", Keyword.STOP),
        ("Stop", Keyword.STOP),
        ("  STOP  ", Keyword.STOP),
        ("STOP.", Keyword.STOP),
        ("Stop!!", Keyword.STOP),
        ("stop all", Keyword.STOP),
        ("Stop   All", Keyword.STOP),
        ("optout", Keyword.STOP),
        ("Opt-Out", Keyword.STOP),
        ("opt out", Keyword.STOP),
        ("revoke", Keyword.STOP),
        ("\uff33\uff34\uff2f\uff30", Keyword.STOP),  # full-width letters
        ("Arrêt", Keyword.STOP),
        ("ARRET", Keyword.STOP),
        ("¡Alto!", Keyword.STOP),
        ("stopp", Keyword.STOP),
        ("start", Keyword.START),
        ("Yes!", Keyword.START),
        ("unstop", Keyword.START),
        ("subscribe", Keyword.START),
        ("optin", Keyword.START),
        ("help?", Keyword.HELP),
        ("Info", Keyword.HELP),
        ("aide", Keyword.HELP),
        ("ayuda", Keyword.HELP),
        ("Stop sending me these", Keyword.NONE),
        ("please stop", Keyword.NONE),
        ("STOP PLEASE", Keyword.NONE),
        ("stopping by at 5", Keyword.NONE),
        ("yes please, 7pm works", Keyword.NONE),
        ("unsubscribed?", Keyword.NONE),
        ("", Keyword.NONE),
        ("   ", Keyword.NONE),
        ("!!!", Keyword.NONE),
    ],
)
def test_classify(body: str, keyword: Keyword) -> None:
    assert classify(body) is keyword


_CASE_VARIANT = st.sampled_from([str.upper, str.lower, str.title, str.capitalize])


@given(
    keyword=st.sampled_from([Keyword.STOP, Keyword.START, Keyword.HELP]),
    data=st.data(),
    case=_CASE_VARIANT,
    before=st.sampled_from(["", " ", "\t", "\n "]),
    after=st.sampled_from(["", ".", "!", "!!", "?", " ", " .\n"]),
)
def test_case_spaces_and_trailing_punctuation_do_not_matter(
    keyword: Keyword,
    data: st.DataObject,
    case: Callable[[str], str],
    before: str,
    after: str,
) -> None:
    word = data.draw(st.sampled_from(TWILIO_DEFAULTS[keyword]))

    assert classify(before + case(word) + after) is keyword


@given(words=st.lists(st.sampled_from(["stop", "all", "please", "me", "yes"]), min_size=2))
def test_several_words_are_a_reply_unless_stop_all(words: list[str]) -> None:
    expected = Keyword.STOP if words == ["stop", "all"] else Keyword.NONE

    assert classify(" ".join(words)) is expected


def test_stop_reply_names_the_business_and_how_to_come_back() -> None:
    text = reply_text(Keyword.STOP, "Café Lumière")

    assert "unsubscribed" in text
    assert "Café Lumière" in text
    assert "START" in text


def test_start_reply_says_how_to_leave() -> None:
    text = reply_text(Keyword.START, "Café Lumière")

    assert "resubscribed" in text
    assert "Café Lumière" in text
    assert "STOP" in text


def test_help_reply_lists_the_keywords() -> None:
    text = reply_text(Keyword.HELP, "Café Lumière")

    assert "Café Lumière" in text
    assert "STOP" in text and "START" in text


def test_no_keyword_no_reply() -> None:
    assert reply_text(Keyword.NONE, "Café Lumière") == ""


def test_twiml_message_escapes_the_text() -> None:
    xml = twiml_message('Tom & Jerry <3 "you"')

    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Message>')
    assert "Tom &amp; Jerry &lt;3" in xml
    message = ET.fromstring(xml).find("Message")
    assert message is not None
    assert message.text == 'Tom & Jerry <3 "you"'


def test_no_text_is_an_empty_response() -> None:
    assert twiml_message("") == '<?xml version="1.0" encoding="UTF-8"?><Response/>'


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@given(text=st.text(min_size=1))
def test_any_text_round_trips_through_twiml(text: str) -> None:
    root = ET.fromstring(twiml_message(text).encode())

    assert root.tag == "Response"
    message = root.find("Message")
    assert message is not None
    assert (message.text or "") == _NOT_XML.sub("", text)
