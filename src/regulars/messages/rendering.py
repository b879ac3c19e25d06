"""Templates to messages: check what an author wrote, compile it once, render it per customer.

`compile_source` does the slow work once per template version and locale (MJML to HTML, CSS
inlining, the text part) and keeps parsed Liquid; `render` then only runs Liquid, which is the
hot path of a broadcast. Strict rendering fails on a missing variable (`RenderFailed` names
it); lenient rendering prints nothing for it. The rendered shapes per channel are listed at
the bottom of messages/content.py. Tracked links and the open pixel are put in after.

Beside it: liquid_env.py (the sandboxed Liquid environments, the filters, parsing a field)
and email_html.py (an email body through MJML, the CSS inliner and html2text).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from html import escape, unescape

import orjson
from liquid.exceptions import LiquidError, UndefinedError
from pydantic import ValidationError

from regulars.messages.content import SOURCE_MODELS
from regulars.messages.email_html import email_parts, tidy_text
from regulars.messages.liquid_env import (
    LiquidField,
    Origin,
    RenderContext,
    TemplateProblem,
    parse,
    render_namespace,
)
from regulars.messages.models import MessageChannel
from regulars.messages.sms_text import measure_sms

__all__ = [
    "CompiledTemplate",
    "RenderContext",
    "RenderFailed",
    "TemplateInvalid",
    "TemplateProblem",
    "check",
    "compile_source",
    "open_pixel",
    "pick_locale",
    "render",
    "rewrite_links",
]


class RenderFailed(ValueError):
    """A message that cannot be rendered; `reason` says why and where."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TemplateInvalid(ValueError):
    """A source that `compile_source` cannot compile; `problems` as `check` lists them."""

    def __init__(self, problems: list[TemplateProblem]) -> None:
        super().__init__(f"{problems[0].field}: {problems[0].message}")
        self.problems = problems


# --- Compiling ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """What `render` needs: parsed Liquid per field, an email's HTML and text already built."""

    channel: MessageChannel
    fields: Mapping[str, LiquidField]  # "subject", "html", "text", "parameters.0", ...
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
    texts = [(path, text, Origin(path, text)) for path, text in _leaves(values, "")]
    problems: list[TemplateProblem] = []
    if channel == MessageChannel.EMAIL:
        texts = [item for item in texts if item[0] not in ("body", "format")]
        parts, problems = email_parts(values["body"], mjml_format=values["format"] == "mjml")
        texts += parts
    fields: dict[str, LiquidField] = {}
    for key, text, origin in texts:
        parsed = parse(text, origin)
        if isinstance(parsed, LiquidField):
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
        if liquid.constant is not None:
            return liquid.constant
        template = liquid.strict if self.strict else liquid.lenient
        try:
            return template.render(self.namespace)
        except LiquidError as exc:
            raise RenderFailed(_reason(exc, liquid.origin)) from None


def _reason(exc: LiquidError, origin: Origin) -> str:
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
    fill = _Fill(compiled, context, render_namespace(context), strict, whatsapp_free_text)
    return _RENDERERS[compiled.channel](fill)


def _email(fill: _Fill) -> dict[str, object]:
    subject, preheader = " ".join(fill("subject").split()), " ".join(fill("preheader").split())
    html = fill("html")
    if preheader:
        found = _BODY_OPEN.search(html)
        at = found.end() if found else 0
        html = html[:at] + _PREVIEW.format(escape(preheader)) + html[at:]
    text = tidy_text(fill("text"))  # lines of false `if`s
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
