"""The Liquid that templates run in, and `parse`, the only way into it.

Split from rendering.py, which compiles whole sources and renders them per channel; this
module knows no channel. It holds the sandboxed environment in a strict and a lenient kind
(no includes; limits on loops, output and assigned values); the filters authors use beside
Liquid's own (money, local_date, local_datetime, json), which format in the customer's
locale and time zone from the `RenderContext` that `render_namespace` puts where no template
can read it; and the small types that say where a problem is: `Origin` maps a position in a
template back to the author's line and column, `TemplateProblem` is what `check` lists.

Strict rendering fails on a missing variable, lenient rendering prints nothing for it; `if`
and `default` work on missing values in both. A filter given a bad value fails a strict
render and prints nothing in a lenient one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency
from liquid import BoundTemplate, Environment, FalsyStrictUndefined, Token, Undefined
from liquid import RenderContext as LiquidContext
from liquid.exceptions import FilterArgumentError, LiquidError
from liquid.filter import with_context

MAX_LOOP_ITERATIONS = 10_000
MAX_OUTPUT_BYTES = 2_000_000  # per field; Gmail clips an email at 102 kB anyway
MAX_ASSIGNED_BYTES = 1_000_000
_CONTEXT_KEY = "regulars:render"  # not a Liquid name, so no template can read or shadow it


@dataclass(frozen=True, slots=True)
class RenderContext:
    variables: Mapping[str, object]  # "customer", "facts", "traits", "event", "links", ...
    locale: str = "en"  # "de-DE", "de_DE" or "de"
    timezone: str = "UTC"  # IANA name


def render_namespace(context: RenderContext) -> dict[str, object]:
    """What a template renders with: the variables, and the settings the filters read."""
    return {**context.variables, _CONTEXT_KEY: context}


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    field: str  # "subject", "body", "actions.0.title"
    message: str
    line: int | None = None  # 1-based, in the author's text
    column: int | None = None  # 1-based


@dataclass(frozen=True, slots=True)
class Origin:
    """The author's field and text a template came from, to say where a problem is."""

    field: str
    source: str
    # For a template derived from the source (an email's HTML and text part): where each
    # Liquid tag starts in the derived text and in the source, in order.
    tags: tuple[tuple[int, int], ...] | None = None

    def locate(self, index: int) -> tuple[int, int] | None:
        """Line and column in the source of an index into the template's text."""
        found: int | None = index if self.tags is None else None
        for derived, original in self.tags or ():
            if derived > index:
                break
            found = original + index - derived
        return None if found is None or index < 0 else line_column(self.source, found)


def line_column(text: str, index: int) -> tuple[int, int]:
    return text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index)


@dataclass(frozen=True, slots=True)
class LiquidField:
    """One field parsed both ways, with where it came from; `constant`, the text of a field
    with no Liquid in it, which renders to itself (an empty preheader: no render needed)."""

    origin: Origin
    strict: BoundTemplate
    lenient: BoundTemplate
    constant: str | None = None


def parse(text: str, origin: Origin) -> LiquidField | TemplateProblem:
    try:
        strict = _STRICT.from_string(text)
    except LiquidError as exc:  # without a position the parser ran off the end
        where = origin.locate(exc.token.start_index) if exc.token else None
        line, column = where or line_column(origin.source, len(origin.source))
        return TemplateProblem(origin.field, str(exc.message), line, column)
    for name, spans in strict.analyze(include_partials=False).filters.items():
        if name not in _STRICT.filters:  # else found only when a render reaches it
            where = origin.locate(spans[0].index)
            return TemplateProblem(
                origin.field, f"unknown filter '{name}'", *(where or (None, None))
            )
    plain = "{{" not in text and "{%" not in text and strict.render() == text
    return LiquidField(origin, strict, _LENIENT.from_string(text), text if plain else None)


# --- Environments ---------------------------------------------------------------------------


class _Missing(FalsyStrictUndefined):
    """Strict undefined: printing it fails, `if` treats it as false, `default` replaces it."""

    force_liquid_default = True


class _Environment(Environment):
    loop_iteration_limit = MAX_LOOP_ITERATIONS
    output_stream_limit = MAX_OUTPUT_BYTES
    local_namespace_limit = MAX_ASSIGNED_BYTES
    strict: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__(undefined=_Missing if self.strict else Undefined)
        for sandboxed in ("include", "render"):  # there is no file system to read from
            del self.tags[sandboxed]
        for name, function in _FILTERS.items():
            self.add_filter(name, function)

    def error(
        self,
        exc: type[LiquidError] | LiquidError,
        msg: str | None = None,
        token: Token | None = None,
    ) -> None:
        # The parser raises some syntax errors with a token that has no position; the first
        # enclosing token that has one is the nearest place to point the author at.
        if isinstance(exc, LiquidError) and _positioned(token) and not _positioned(exc.token):
            exc.token = token
        super().error(exc, msg, token)


class _StrictEnvironment(_Environment):
    strict = True


def _positioned(token: Token | None) -> bool:
    return token is not None and token.start_index >= 0


# --- Filters --------------------------------------------------------------------------------


def _bad_input(context: LiquidContext, message: str) -> str:
    if isinstance(context.env, _Environment) and context.env.strict:
        raise FilterArgumentError(message, token=None)
    return ""


def _settings(context: LiquidContext) -> RenderContext:
    settings = context.globals[_CONTEXT_KEY]
    assert isinstance(settings, RenderContext)
    return settings


@lru_cache(maxsize=256)
def _babel_locale(code: str) -> Locale | None:
    try:
        return Locale.parse(code.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return None


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@with_context
def _money(value: object, currency: object = None, *, context: LiquidContext) -> str:
    if isinstance(value, Undefined):
        return str(value)  # a strict undefined raises here, naming the variable
    amount = _decimal(value)
    if amount is None:
        return _bad_input(context, f"money: expected an amount, found {value!r}")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha()):
        return _bad_input(context, f'money: expected a currency code like "EUR", not {currency!r}')
    locale = _babel_locale(_settings(context).locale)
    if locale is None:
        return _bad_input(context, f"money: unknown locale {_settings(context).locale!r}")
    return _money_text(amount, currency.upper(), locale)


@lru_cache(maxsize=4096)  # a broadcast repeats its prices, and the text part the HTML's
def _money_text(amount: Decimal, currency: str, locale: Locale) -> str:
    return format_currency(amount, currency, locale=locale)


def _decimal(value: object) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


@with_context
def _local_date(value: object, style: object = "medium", *, context: LiquidContext) -> str:
    return _format_when(value, style, context, with_time=False)


@with_context
def _local_datetime(value: object, style: object = "medium", *, context: LiquidContext) -> str:
    return _format_when(value, style, context, with_time=True)


def _format_when(value: object, style: object, context: LiquidContext, *, with_time: bool) -> str:
    name = "local_datetime" if with_time else "local_date"
    if isinstance(value, Undefined):
        return str(value)
    when = _when(value)
    if when is None or (with_time and not isinstance(when, datetime)):
        wanted = "a date-time" if with_time else "a date"
        return _bad_input(context, f"{name}: expected {wanted} (ISO 8601), found {value!r}")
    settings = _settings(context)
    locale, zone = _babel_locale(settings.locale), _zone(settings.timezone)
    if locale is None:
        return _bad_input(context, f"{name}: unknown locale {settings.locale!r}")
    if zone is None:
        return _bad_input(context, f"{name}: unknown time zone {settings.timezone!r}")
    if not isinstance(style, str) or not style:
        return _bad_input(context, f"{name}: expected a format such as 'long', not {style!r}")
    if isinstance(when, datetime) and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return _date_text(when, style, locale, zone, with_time=with_time)
    except (ValueError, KeyError, AttributeError) as exc:  # babel's answer to a bad pattern
        return _bad_input(context, f"{name}: bad format {style!r}: {exc}")


@lru_cache(maxsize=4096)  # keyed on the instant and the zone, never on a local time
def _date_text(when: date, style: str, locale: Locale, zone: ZoneInfo, *, with_time: bool) -> str:
    if isinstance(when, datetime):
        when = when.astimezone(zone)
        if with_time:
            return format_datetime(when, style, locale=locale)
    return format_date(when, style, locale=locale)


def _when(value: object) -> date | None:
    if isinstance(value, date):  # datetime included
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    for parse in (date.fromisoformat, datetime.fromisoformat):
        try:
            return parse(text)
        except ValueError:
            continue
    return None


def _jsonable(value: object) -> object:
    """What orjson cannot write itself: a mapping made on demand (a message's `facts` and
    `links`) as the object it stands for, anything else as its text."""
    return dict(value) if isinstance(value, Mapping) else str(value)


@with_context
def _json(value: object, *, context: LiquidContext) -> str:
    if isinstance(value, Undefined):
        return str(value) or "null"
    try:
        return orjson.dumps(value, default=_jsonable).decode()
    except TypeError as exc:  # orjson.JSONEncodeError: a cycle or a key that is not a string
        return _bad_input(context, f"json: {exc}")


_FILTERS: dict[str, Callable[..., str]] = {
    "money": _money,
    "local_date": _local_date,
    "local_datetime": _local_datetime,
    "json": _json,
}
_STRICT = _StrictEnvironment()
_LENIENT = _Environment()
