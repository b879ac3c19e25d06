"""An email body made once per template version: MJML, CSS inlining and the text part, with
the author's Liquid left in place for `render` to run per customer.

Split from rendering.py, whose `compile_source` calls `email_parts` for an email's body.
MJML, the CSS inliner and html2text would each mangle Liquid (MJML fails on the `<` in
`{% if a < b %}`). So each Liquid tag is swapped for a placeholder word first and put back
after, ending where the author put it. Where each tag stood in the author's text is kept, so
a problem in the HTML or the text part still names a line of the body. CSS is inlined at
compile time: a <style> inside a Liquid `if` applies whatever the condition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import css_inline
import html2text
import mjml

from regulars.messages.liquid_env import Origin, TemplateProblem, line_column, parse

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


def email_parts(
    body: str, *, mjml_format: bool
) -> tuple[list[tuple[str, str, Origin]], list[TemplateProblem]]:
    """The HTML and text-part templates of an email body, or the problems in the way."""
    checked = parse(body, Origin("body", body))
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
        ("html", html_liquid, Origin("body", body, html_tags)),
        ("text", text_liquid, Origin("body", body, text_tags)),
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
    line, column = line_column(body, index - shift if source_index is None else source_index)
    return TemplateProblem("body", f"MJML: {_MJML_POSITION.sub('', message)}", line, column)


def _lost_tags(html: str, protected: _Protected, body: str) -> list[TemplateProblem]:
    found = {int(m.group(1) or m.group(2)) for m in protected.pattern.finditer(html)}
    return [
        TemplateProblem(
            "body",
            f"{tag} is dropped by MJML here; put it inside mj-text, mj-raw or an attribute",
            *line_column(body, protected.starts[number]),
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
    return tidy_text("\n".join(line.rstrip() for line in text.splitlines()))


def tidy_text(text: str) -> str:
    """At most one blank line in a row (a false `if` leaves empty lines), one newline at the
    end."""
    return _BLANK_LINES.sub("\n\n", text).strip() + "\n"
