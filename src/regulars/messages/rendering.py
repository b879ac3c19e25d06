"""Templates to messages: check what an author wrote, compile it once, render it per customer.

`compile_source` does the slow work once per template version and locale (MJML to HTML, CSS
inlining, the text part) and keeps parsed Liquid; `render` then only runs Liquid, which is the
hot path of a broadcast. Liquid is sandboxed: no includes, and limits on loops, output and
assigned values. Strict rendering fails on a missing variable (`RenderFailed` names it);
lenient rendering prints nothing for it. `if` and `default` work on missing values in both.
The rendered shapes per channel are listed at the bottom of messages/content.py.

Email bodies go through MJML, the CSS inliner and html2text with each Liquid tag swapped for
a placeholder and put back after, so a tag ends where the author put it. CSS is inlined at
compile time: a <style> inside a Liquid `if` applies whatever the condition.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from html import escape, unescape
from typing import ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import css_inline
import html2text
import mjml
import orjson
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency
from liquid import BoundTemplate, Environment, FalsyStrictUndefined, Token, Undefined
from liquid import RenderContext as LiquidContext
from liquid.exceptions import FilterArgumentError, LiquidError, UndefinedError
from liquid.filter import with_context
from pydantic import ValidationError

from regulars.messages.content import SOURCE_MODELS
from regulars.messages.models import MessageChannel
from regulars.messages.sms_text import measure_sms

MAX_LOOP_ITERATIONS = 10_000
MAX_OUTPUT_BYTES = 2_000_000  # per field; Gmail clips an email at 102 kB anyway
MAX_ASSIGNED_BYTES = 1_000_000
_CONTEXT_KEY = "regulars:render"  # not a Liquid name, so no template can read or shadow it


class RenderFailed(ValueError):
    """A message that cannot be rendered; `reason` says why and where."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    field: str  # "subject", "body", "actions.0.title"
    message: str
    line: int | None = None  # 1-based, in the author's text
    column: int | None = None  # 1-based


class TemplateInvalid(ValueError):
    """A source that `compile_source` cannot compile; `problems` as `check` lists them."""

    def __init__(self, problems: list[TemplateProblem]) -> None:
        super().__init__(f"{problems[0].field}: {problems[0].message}")
        self.problems = problems


@dataclass(frozen=True, slots=True)
class RenderContext:
    variables: Mapping[str, object]  # "customer", "facts", "traits", "event", "links", ...
    locale: str = "en"  # "de-DE", "de_DE" or "de"
    timezone: str = "UTC"  # IANA name


# --- Liquid environments and filters ------------------------------------------------------


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


@with_context
def _json(value: object, *, context: LiquidContext) -> str:
    if isinstance(value, Undefined):
        return str(value) or "null"
    try:
        return orjson.dumps(value, default=str).decode()
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


# --- Compiling ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Origin:
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
        return None if found is None or index < 0 else _line_column(self.source, found)


def _line_column(text: str, index: int) -> tuple[int, int]:
    return text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index)


@dataclass(frozen=True, slots=True)
class _Liquid:
    origin: _Origin
    strict: BoundTemplate
    lenient: BoundTemplate


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """What `render` needs: parsed Liquid per field, an email's HTML and text already built."""

    channel: MessageChannel
    fields: Mapping[str, _Liquid]  # "subject", "html", "text", "parameters.0", ...
    lengths: Mapping[str, int]  # of list fields: "actions" -> 2


def check(channel: MessageChannel, source: Mapping[str, object]) -> list[TemplateProblem]:
    """Every problem of a source: invalid fields, Liquid syntax, MJML that does not compile."""
    return _compile(channel, source)[1]


def compile_source(channel: MessageChannel, source: Mapping[str, object]) -> CompiledTemplate:
    """Compile a valid source once; the caller caches it per template version and locale."""
    compiled, problems = _compile(channel, source)
    if problems:
        raise TemplateInvalid(problems)
    return compiled


def _compile(
    channel: MessageChannel, source: Mapping[str, object]
) -> tuple[CompiledTemplate, list[TemplateProblem]]:
    compiled = CompiledTemplate(channel, {}, {})
    try:
        values = SOURCE_MODELS[channel].model_validate(source).model_dump()
    except ValidationError as exc:
        return compiled, [
            TemplateProblem(".".join(str(part) for part in error["loc"]) or "source", error["msg"])
            for error in exc.errors(include_url=False)
        ]
    texts = [(path, text, _Origin(path, text)) for path, text in _leaves(values, "")]
    problems: list[TemplateProblem] = []
    if channel == MessageChannel.EMAIL:
        texts = [item for item in texts if item[0] not in ("body", "format")]
        parts, problems = _email_parts(values["body"], mjml_format=values["format"] == "mjml")
        texts += parts
    fields: dict[str, _Liquid] = {}
    for key, text, origin in texts:
        parsed = _parse(text, origin)
        if isinstance(parsed, _Liquid):
            fields[key] = parsed
        else:
            problems.append(parsed)
    lengths = {key: len(value) for key, value in values.items() if isinstance(value, list)}
    return CompiledTemplate(channel, fields, lengths), problems


def _leaves(value: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}.{index}")


def _parse(text: str, origin: _Origin) -> _Liquid | TemplateProblem:
    try:
        strict = _STRICT.from_string(text)
    except LiquidError as exc:  # without a position the parser ran off the end
        where = origin.locate(exc.token.start_index) if exc.token else None
        line, column = where or _line_column(origin.source, len(origin.source))
        return TemplateProblem(origin.field, str(exc.message), line, column)
    for name, spans in strict.analyze(include_partials=False).filters.items():
        if name not in _STRICT.filters:  # else found only when a render reaches it
            where = origin.locate(spans[0].index)
            return TemplateProblem(
                origin.field, f"unknown filter '{name}'", *(where or (None, None))
            )
    return _Liquid(origin, strict, _LENIENT.from_string(text))


# --- Email: MJML and CSS once, Liquid left in place -------------------------------------------

_LIQUID_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_NOT_TEXT = re.compile(  # comments, raw-text elements (style, ...) and tags
    r"<!--.*?-->|<(script|style|title|textarea)\b.*?</\1\s*>"
    r"|<[a-zA-Z/!?](?:[^\"'>]|\"[^\"]*\"|'[^']*')*>",
    re.DOTALL | re.IGNORECASE,
)
_TAG_NAME = re.compile(r"<(/?[a-zA-Z][a-zA-Z0-9-]*)")
_TABLE_PARTS = frozenset(
    {"table", "tbody", "thead", "tfoot", "tr", "col", "/tr", "/td", "/th", "/caption"}
    | {"/tbody", "/thead", "/tfoot", "/colgroup"}
)
_TABLE_ROWS = re.compile(r"(<table\b[^>]*>)((?:\s|<!--.*?-->)*<tr\b)", re.IGNORECASE | re.DOTALL)
_MJML_POSITION = re.compile(r" at position (\d+):\d+")
_MARKDOWN_LINK = re.compile(r"\[([^\[\]\n]*)\]\(((?:\\.|[^()\\\s])*)(?: \"[^\"\n]*\")?\)")
_BLANK_LINES = re.compile(r"\n(?:[ \t]*\n){2,}")
_INLINER = css_inline.CSSInliner(
    keep_at_rules=True, keep_link_tags=True, load_remote_stylesheets=False
)


@dataclass(frozen=True, slots=True)
class _Protected:
    """Markup with each Liquid tag swapped for a placeholder word that MJML, the HTML parser of
    the CSS inliner and html2text all leave alone (MJML fails on a `<` in `{% if a < b %}`)."""

    text: str
    tags: tuple[str, ...]
    starts: tuple[int, ...]  # of each tag in the author's source
    marker: str

    @property
    def pattern(self) -> re.Pattern[str]:
        word = rf"{self.marker}(\d+)z"
        return re.compile(rf"<!--{word}-->|{word}(?:=\"\")?", re.IGNORECASE)


def _protect(source: str) -> _Protected:
    marker = "lqz"
    while marker in source.lower():
        marker += "q"
    tags: list[str] = []
    starts: list[int] = []

    def swap(match: re.Match[str]) -> str:
        tags.append(match.group(0))
        starts.append(match.start())
        return f"{marker}{len(tags) - 1}z"

    return _Protected(_LIQUID_TAG.sub(swap, source), tuple(tags), tuple(starts), marker)


def _pin_placeholders(html: str, protected: _Protected) -> str:
    """Make comments of the placeholders in text that the HTML parser would move: text in a
    table outside its cells goes before the table ("foster parenting"), text in the head
    starts the body. Elsewhere a comment would move instead (before <html>), so text stays.
    An implied <tbody> is written out, or the parser would open it after a leading comment."""
    word = re.compile(rf"{protected.marker}\d+z")
    pieces: list[str] = []
    at, last_tag, in_head = 0, "", False
    for match in [*_NOT_TEXT.finditer(html), None]:
        text = html[at : match.start() if match else len(html)]
        if last_tag in _TABLE_PARTS or in_head:
            text = word.sub(lambda found: f"<!--{found.group(0)}-->", text)
        pieces.append(text)
        if match is None:
            break
        pieces.append(match.group(0))
        at = match.end()
        name = _TAG_NAME.match(match.group(0))
        if name:
            last_tag = name.group(1).lower()
            in_head = (in_head or last_tag == "head") and last_tag not in ("/head", "body")
    return _TABLE_ROWS.sub(r"\1<tbody>\2", "".join(pieces))


def _restore(text: str, protected: _Protected) -> tuple[str, tuple[tuple[int, int], ...]]:
    """The text with the Liquid tags back, and where each starts in it and in the source."""
    pieces: list[str] = []
    origins: list[tuple[int, int]] = []
    at = size = 0
    for match in protected.pattern.finditer(text):
        index = int(match.group(1) or match.group(2))
        pieces.append(text[at : match.start()])
        size += match.start() - at
        origins.append((size, protected.starts[index]))
        pieces.append(protected.tags[index])
        size += len(protected.tags[index])
        at = match.end()
    pieces.append(text[at:])
    return "".join(pieces), tuple(origins)


def _email_parts(
    body: str, *, mjml_format: bool
) -> tuple[list[tuple[str, str, _Origin]], list[TemplateProblem]]:
    """The HTML and text-part templates of an email body, or the problems in the way."""
    checked = _parse(body, _Origin("body", body))
    if isinstance(checked, TemplateProblem):
        return [], [checked]
    protected = _protect(body)
    html = protected.text
    if mjml_format:
        try:
            html = mjml.mjml2html(html, include_loader=_no_includes)
        except ValueError as exc:
            return [], [_mjml_problem(str(exc), protected, body)]
    try:
        html = _INLINER.inline(_pin_placeholders(html, protected))
    except css_inline.InlineError as exc:
        return [], [TemplateProblem("body", f"CSS: {exc}")]
    lost = _lost_tags(html, protected, body)
    if lost:
        return [], lost
    plain = re.sub(rf"<!--({protected.marker}\d+z)-->", r"\1", html)
    html_liquid, html_tags = _restore(html, protected)
    text_liquid, text_tags = _restore(_text_part(plain, protected), protected)
    return [
        ("html", html_liquid, _Origin("body", body, html_tags)),
        ("text", text_liquid, _Origin("body", body, text_tags)),
    ], []


def _no_includes(path: str) -> str:
    raise ValueError(f"mj-include is not supported ({path})")


def _mjml_problem(message: str, protected: _Protected, body: str) -> TemplateProblem:
    """MJML's message; its rare byte position is in the placeholder text, so map it back."""
    found = _MJML_POSITION.search(message)
    if found is None:
        return TemplateProblem("body", f"MJML: {message}")
    index = len(protected.text.encode()[: int(found.group(1))].decode(errors="ignore"))
    source_index, shift = None, 0  # shift: placeholder text minus source text so far
    for number, start in enumerate(protected.starts):
        placeholder_start, size = start + shift, len(f"{protected.marker}{number}z")
        if index < placeholder_start + size:
            source_index = start if index >= placeholder_start else index - shift
            break
        shift += size - len(protected.tags[number])
    line, column = _line_column(body, index - shift if source_index is None else source_index)
    return TemplateProblem("body", f"MJML: {_MJML_POSITION.sub('', message)}", line, column)


def _lost_tags(html: str, protected: _Protected, body: str) -> list[TemplateProblem]:
    found = {int(m.group(1) or m.group(2)) for m in protected.pattern.finditer(html)}
    return [
        TemplateProblem(
            "body",
            f"{tag} is dropped by MJML here; put it inside mj-text, mj-raw or an attribute",
            *_line_column(body, protected.starts[number]),
        )
        for number, tag in enumerate(protected.tags)
        if number not in found
    ]


class _PlainText(html2text.HTML2Text):
    """Plain text, not Markdown: no escapes, no emphasis marks, no wrapping, tables as lines."""

    def __init__(self) -> None:
        super().__init__(bodywidth=0)
        self.ignore_emphasis = True
        self.ignore_tables = True
        self.images_to_alt = True
        self.unicode_snob = True
        self.use_automatic_links = False

    def handle_data(self, data: str, entity_char: bool = False) -> None:
        super().handle_data(data, entity_char=True)  # entity_char=True only skips escaping

    def handle_tag(self, tag: str, attrs: dict[str, str | None], start: bool) -> None:
        super().handle_tag(tag, attrs, start)
        if tag in ("td", "th") and not start:
            self.o(" ")  # keep neighbouring cells apart


def _text_part(html: str, protected: _Protected) -> str:
    """The text part, links as "text (url)"; `html` still has placeholders, not Liquid."""

    def link(match: re.Match[str]) -> str:
        text, url = match.group(1).strip(), re.sub(r"\\(.)", r"\1", match.group(2))
        same = _restore(text, protected)[0] == _restore(url, protected)[0]
        return url if not text or same else f"{text} ({url})"

    text = _MARKDOWN_LINK.sub(link, _PlainText().handle(html))
    lines = "\n".join(line.rstrip() for line in text.splitlines())
    return _BLANK_LINES.sub("\n\n", lines).strip() + "\n"


# --- Rendering ------------------------------------------------------------------------------

_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_PREVIEW = (
    '<span style="display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;'
    'opacity:0;overflow:hidden;mso-hide:all;">{}</span>'
)
_UNDEFINED = re.compile(r"'?(.+?)'? is undefined")


@dataclass(frozen=True, slots=True)
class _Fill:
    compiled: CompiledTemplate
    context: RenderContext
    namespace: dict[str, object]
    strict: bool
    free_text: bool

    def __call__(self, key: str) -> str:
        liquid = self.compiled.fields[key]
        template = liquid.strict if self.strict else liquid.lenient
        try:
            return template.render(self.namespace)
        except LiquidError as exc:
            raise RenderFailed(_reason(exc, liquid.origin)) from None


def _reason(exc: LiquidError, origin: _Origin) -> str:
    message = str(exc.message)
    undefined = _UNDEFINED.fullmatch(message) if isinstance(exc, UndefinedError) else None
    if undefined:
        message = f"{undefined.group(1)} is not defined"
    where = origin.locate(exc.token.start_index) if exc.token else None
    return f"{message} ({origin.field}{f', line {where[0]}' if where else ''})"


def render(
    compiled: CompiledTemplate,
    context: RenderContext,
    *,
    strict: bool,
    whatsapp_free_text: bool = False,
) -> dict[str, object]:
    """The channel's rendered content (messages/content.py); RenderFailed says what failed.

    `whatsapp_free_text`: the customer wrote within 24 hours, so free text may be sent."""
    namespace = {**context.variables, _CONTEXT_KEY: context}
    fill = _Fill(compiled, context, namespace, strict, whatsapp_free_text)
    return _RENDERERS[compiled.channel](fill)


def _email(fill: _Fill) -> dict[str, object]:
    subject, preheader = " ".join(fill("subject").split()), " ".join(fill("preheader").split())
    html = fill("html")
    if preheader:
        found = _BODY_OPEN.search(html)
        at = found.end() if found else 0
        html = html[:at] + _PREVIEW.format(escape(preheader)) + html[at:]
    text = _BLANK_LINES.sub("\n\n", fill("text")).strip() + "\n"  # lines of false `if`s
    return {"subject": subject, "preheader": preheader, "html": html, "text": text}


# Locale formatting (Babel) puts no-break and thin spaces in amounts and dates ("38,50 €"):
# in an SMS one of them alone would switch the whole message to UCS-2, at 70 characters a
# segment instead of 160. A plain space reads the same.
_SMS_SPACES = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u2007": " "})


def _sms(fill: _Fill) -> dict[str, object]:
    body = fill("body").translate(_SMS_SPACES)
    measure = measure_sms(body)
    return {"body": body, "encoding": measure.encoding, "segments": measure.segments}


def _whatsapp(fill: _Fill) -> dict[str, object]:
    if fill.free_text:
        body = fill("body")
        if body.strip():
            return {"body": body}
    name = fill("template_name").strip()
    if not name:
        raise RenderFailed("whatsapp: outside the 24-hour window a template_name is needed")
    language = fill("template_language").strip() or fill.context.locale.replace("-", "_")
    count = fill.compiled.lengths.get("parameters", 0)
    parameters = [fill(f"parameters.{index}") for index in range(count)]
    return {"template": {"name": name, "language": language, "parameters": parameters}}


def _push(fill: _Fill) -> dict[str, object]:
    actions = [
        {key: fill(f"actions.{index}.{key}") for key in ("action", "title", "url")}
        for index in range(fill.compiled.lengths.get("actions", 0))
    ]
    content: dict[str, object] = {key: fill(key) for key in ("title", "body", "icon", "url")}
    return content | {"actions": actions}


def _inapp(fill: _Fill) -> dict[str, object]:
    return {key: fill(key) for key in ("title", "body", "link")}


def _webhook(fill: _Fill) -> dict[str, object]:
    body = fill("body")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RenderFailed(f"webhook body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise RenderFailed(f"webhook body must be a JSON object, not {type(payload).__name__}")
    return {"url": fill("url").strip(), "payload": payload}


_RENDERERS: dict[MessageChannel, Callable[[_Fill], dict[str, object]]] = {
    MessageChannel.EMAIL: _email,
    MessageChannel.SMS: _sms,
    MessageChannel.WHATSAPP: _whatsapp,
    MessageChannel.PUSH: _push,
    MessageChannel.INAPP: _inapp,
    MessageChannel.WEBHOOK: _webhook,
}


# --- Locales, tracked links -----------------------------------------------------------------


def pick_locale(available: Collection[str], wanted: str | None, default: str) -> str:
    """The available locale for `wanted`: the same one, else the same language, else default.
    Case and `-`/`_` do not matter: de_at finds de-AT; de-AT finds de, de finds de-DE."""
    by_key = {_locale_key(code): code for code in sorted(available)}
    if not wanted:
        return default
    key = _locale_key(wanted)
    language = key.split("-")[0]
    if key in by_key:
        return by_key[key]
    if language in by_key:
        return by_key[language]
    same_language = [code for found, code in by_key.items() if found.split("-")[0] == language]
    return same_language[0] if same_language else default


def _locale_key(code: str) -> str:
    return code.strip().replace("_", "-").lower()


_HREF = re.compile(r"""(<a\s[^>]*?\bhref\s*=\s*)(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_HTTP = re.compile(r"https?://", re.IGNORECASE)


def rewrite_links(
    html: str, click_url: Callable[[str], str], *, keep: Collection[str] = frozenset()
) -> str:
    """Every http(s) link through `click_url`, except the URLs in `keep` (unsubscribe and
    preferences links, compared exactly). mailto:, tel: and # links stay as they are."""

    def replace(match: re.Match[str]) -> str:
        quoted = match.group(2) if match.group(2) is not None else match.group(3)
        url = unescape(quoted).strip()
        if not _HTTP.match(url) or url in keep:
            return match.group(0)
        return f'{match.group(1)}"{escape(click_url(url))}"'

    return _HREF.sub(replace, html)


def open_pixel(html: str, pixel_url: str) -> str:
    """A 1x1 image before </body> (at the end without one) that reports the open."""
    pixel = (
        f'<img src="{escape(pixel_url)}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0;">'
    )
    at = html.rfind("</body>")
    if at < 0:
        at = html.lower().rfind("</body>")
    return html + pixel if at < 0 else html[:at] + pixel + html[at:]
