"""Dashboard search: what someone types, classified, read as prefix ranges an index serves.

"@" reads an email prefix; digits (with "+", spaces, dashes) a phone prefix in E.164; a
26-character ULID a customer id; anything else a first- or last-name prefix, or "first
last". An exact customer id or external user id always comes first. Results are ordered by
the matched value, then id, and paged by keyset on that pair: no query reads more than a
page of index entries, whatever the number of customers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.orm import Session

from regulars.config import get_settings
from regulars.customers.models import Customer
from regulars.customers.reads import customer_reads
from regulars.customers.repository import search as repository
from regulars.customers.repository.search import SearchField
from regulars.customers.rules import MessageInvalid, normalise_phone
from regulars.customers.schemas import CustomerPage
from regulars.errors import ValidationFailed
from regulars.kit.pagination import decode_cursor, encode_cursor

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
PHONE = re.compile(r"^\+?[\d][\d\s().-]*$")
PHONE_NOISE = re.compile(r"[\s().-]")

Range = tuple[SearchField, str, str]


@dataclass(frozen=True, slots=True)
class Stream:
    """One index range; `also` must hold too, `not_` must not (it is another stream's)."""

    range: Range
    also: Range | None = None
    not_: Range | None = None


def _prefix(field: SearchField, value: str) -> Range:
    """[value, value with its last character bumped): every string starting with value."""
    return field, value, value[:-1] + chr(ord(value[-1]) + 1)


def classify(text: str) -> str:
    if "@" in text:
        return "email"
    if ULID.match(text.upper()):
        return "id"
    if PHONE.match(text):
        return "phone"
    return "name"


def _phone_prefix(text: str) -> str:
    digits = PHONE_NOISE.sub("", text)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if digits.startswith("+"):
        return digits
    try:  # a whole national number: its E.164 form
        return normalise_phone(digits, get_settings().default_phone_region)
    except MessageInvalid:
        return "+" + digits  # a country code typed without "+"


def streams(session: Session, text: str) -> list[Stream]:
    kind = classify(text)
    if kind == "email":
        return [Stream(_prefix("email", text.lower()))]
    if kind == "phone":
        return [Stream(_prefix("phone", _phone_prefix(text)))]
    if kind == "id":
        return []
    words = repository.lowered(session, text).split()
    if len(words) > 1:
        first, last = words[0], " ".join(words[1:])
        return [Stream(_prefix("first_name", first), also=_prefix("last_name", last))]
    first_range = _prefix("first_name", words[0])
    return [Stream(first_range), Stream(_prefix("last_name", words[0]), not_=first_range)]


def _after(cursor: str | None) -> tuple[str, str] | None:
    if cursor is None:
        return None
    key, customer_id = decode_cursor(cursor, 2)
    if not isinstance(key, str) or not isinstance(customer_id, str):
        raise ValidationFailed("cursor is not valid: pass next_cursor back unchanged")
    return key, customer_id


def search(session: Session, text: str, *, cursor: str | None, limit: int = 50) -> CustomerPage:
    """A page of the customers `text` finds (see the module); exact id matches first."""
    text = text.strip()
    after = _after(cursor)
    found: list[tuple[str, Customer]] = []
    for stream in streams(session, text) if text else []:
        field, low, high = stream.range
        found += repository.search_customers(
            session,
            field,
            low=low,
            high=high,
            after=after,
            limit=limit + 1,
            also=stream.also,
            not_=stream.not_,
        )
    found.sort(key=lambda pair: (pair[0], pair[1].id))
    page = found[:limit]
    more = len(found) > limit
    exact = repository.get_by_reference(session, text) if text and after is None else []
    shown = exact + [c for _, c in page if c not in exact]
    return CustomerPage(
        items=customer_reads(session, shown, identities=False),
        next_cursor=encode_cursor(page[-1][0], page[-1][1].id) if more else None,
    )
