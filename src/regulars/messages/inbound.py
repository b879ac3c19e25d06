"""Replies customers text back (SMS, WhatsApp): is it a keyword, what we answer, and the TwiML
that carries the answer. Pure: the webhook endpoint and the services act on the result.

Keywords follow Twilio's default lists, plus the usual variants and the French and Spanish
ones carriers expect. A keyword is the whole message, one word (or "stop all", "opt out"),
any case, surrounding spaces and trailing punctuation ignored: "Stop!" is STOP; "Stop sending
me these" is an ordinary reply (NONE), kept as an event.

Twilio itself answers these keywords on long codes and toll-free numbers unless Advanced
Opt-Out is configured otherwise, and blocks messages to a number that sent STOP (error 21610).
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum
from xml.sax.saxutils import escape


class Keyword(StrEnum):
    STOP = "stop"
    START = "start"
    HELP = "help"
    NONE = "none"


_KEYWORDS: dict[str, Keyword] = {
    **dict.fromkeys(
        [
            "stop",
            "stopall",
            "stop all",
            "unsubscribe",
            "cancel",
            "end",
            "quit",
            "optout",
            "opt-out",
            "opt out",
            "revoke",
            "arret",  # French (Canadian carriers require ARRET beside STOP)
            "arrêt",
            "arrete",
            "arrête",
            "arrett",
            "alto",  # Spanish, as used by US carriers
            "stopp",  # German, Scandinavian
        ],
        Keyword.STOP,
    ),
    **dict.fromkeys(
        ["start", "yes", "unstop", "subscribe", "optin", "opt-in", "opt in"], Keyword.START
    ),
    **dict.fromkeys(["help", "info", "aide", "ayuda"], Keyword.HELP),
}
_PUNCTUATION = ".!?,;:¡¿\"'() "
_SPACES = re.compile(r"\s+")


def classify(body: str) -> Keyword:
    """The keyword a whole message is, or NONE."""
    return _KEYWORDS.get(_normalize(body), Keyword.NONE)


def _normalize(body: str) -> str:
    """NFKC (full-width letters become ASCII), case folded, spaces collapsed, punctuation
    around it dropped: "  STOP!! " -> "stop", "¡Alto!" -> "alto"."""
    text = unicodedata.normalize("NFKC", body).casefold()
    return _SPACES.sub(" ", text).strip(_PUNCTUATION)


def reply_text(keyword: Keyword, business_name: str) -> str:
    """The standard confirmation for a keyword; "" for NONE (no automatic reply)."""
    name = business_name.strip() or "us"
    if keyword is Keyword.STOP:
        return (
            f"You have been unsubscribed from {name} and will receive no more messages."
            " Reply START to resubscribe."
        )
    if keyword is Keyword.START:
        return (
            f"You have been resubscribed to messages from {name}."
            " Reply HELP for help, STOP to unsubscribe. Msg&data rates may apply."
        )
    if keyword is Keyword.HELP:
        return f"{name}: reply STOP to unsubscribe, START to resubscribe. Msg&data rates may apply."
    return ""


# Characters XML 1.0 cannot carry at all, even escaped (controls other than tab, LF, CR).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def twiml_message(text: str) -> str:
    """A TwiML response replying `text`; an empty <Response/> (no reply) for ""."""
    head = '<?xml version="1.0" encoding="UTF-8"?>'
    if not text:
        return f"{head}<Response/>"
    # A carriage return is written as a reference: a parser would turn a literal one into \n.
    message = escape(_NOT_XML.sub("", text), {"\r": "&#13;"})
    return f"{head}<Response><Message>{message}</Message></Response>"
