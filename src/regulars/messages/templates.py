"""Templates: one per purpose (`key`) and channel, versioned, with locale variants.

Saving checks every locale (unknown fields, Liquid syntax with line and column, MJML) and
refuses the whole save with every problem listed; a saved version is never changed. The
compiled form of a version (MJML turned to HTML, CSS inlined, the text part derived) is
cached per process, so a broadcast compiles each locale once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection
from typing import Any

from sqlalchemy.orm import Session

from regulars.errors import NotFound, ValidationFailed
from regulars.kit import clock, ids
from regulars.messages import rendering, repository
from regulars.messages.content import SOURCE_MODELS
from regulars.messages.models import MessageChannel, Template, TemplateVersion
from regulars.messages.schemas import TemplateRead, TemplateVersionRead, TemplateWrite

_CACHE_SIZE = 512
_compiled: OrderedDict[tuple[str, int, str], rendering.CompiledTemplate] = OrderedDict()
_compiled_lock = threading.Lock()


def check(channel: MessageChannel, data: TemplateWrite) -> None:
    """Refuse content with problems: a 422 whose details list each one with its place."""
    problems: list[dict[str, Any]] = []
    for locale, source in sorted(data.locales.items()):
        for problem in rendering.check(channel, source):
            problems.append(
                {
                    "locale": locale,
                    "field": problem.field,
                    "message": problem.message,
                    "line": problem.line,
                    "column": problem.column,
                }
            )
    if data.default_locale not in data.locales:
        problems.append(
            {
                "locale": data.default_locale,
                "field": "default_locale",
                "message": "the default locale needs content in `locales`",
                "line": None,
                "column": None,
            }
        )
    if problems:
        first = problems[0]
        where = f"{first['locale']}.{first['field']}"
        if first["line"] is not None:
            where += f" line {first['line']}, column {first['column']}"
        raise ValidationFailed(
            f"template has {len(problems)} problem(s); first: {where}: {first['message']}",
            code="invalid_template",
            details=problems,
        )


def save(session: Session, key: str, channel: MessageChannel, data: TemplateWrite) -> TemplateRead:
    """Create the template or add a version to it."""
    check(channel, data)
    now = clock.now()
    template = repository.get_template(session, key, channel)
    if template is None:
        template = Template(id=ids.new_id(), key=key, channel=channel, version=0, created_at=now)
        session.add(template)
    template.name, template.category, template.topic = data.name, data.category, data.topic
    template.strict, template.default_locale = data.strict, data.default_locale
    template.version += 1
    template.updated_at = now
    session.add(
        TemplateVersion(
            template_id=template.id,
            version=template.version,
            locales=_normalised(channel, data.locales),
            created_at=now,
        )
    )
    session.flush()
    return _read(template, data.locales)


def _normalised(channel: MessageChannel, locales: dict[str, Any]) -> dict[str, Any]:
    """Each locale's source with the channel's defaults filled in (what was checked)."""
    model = SOURCE_MODELS[channel]
    return {locale: model.model_validate(source).model_dump() for locale, source in locales.items()}


def _read(template: Template, locales: dict[str, Any]) -> TemplateRead:
    return TemplateRead(
        id=template.id,
        key=template.key,
        channel=template.channel,
        name=template.name,
        category=template.category,
        topic=template.topic,
        strict=template.strict,
        default_locale=template.default_locale,
        version=template.version,
        locales=locales,
        created_at=template.created_at,
        updated_at=template.updated_at,
    )


def current(session: Session, template: Template) -> TemplateVersion:
    version = repository.get_version(session, template.id, template.version)
    assert version is not None, "a template's current version is always stored"
    return version


def get(session: Session, key: str, channel: MessageChannel) -> TemplateRead | None:
    template = repository.get_template(session, key, channel)
    if template is None:
        return None
    return _read(template, current(session, template).locales)


def require(session: Session, key: str, channel: MessageChannel) -> Template:
    template = repository.get_template(session, key, channel)
    if template is None:
        raise NotFound(f"no {channel.value} template {key!r}", details={"template": key})
    return template


def list_all(session: Session) -> list[TemplateRead]:
    return [_read(t, current(session, t).locales) for t in repository.list_templates(session)]


def versions(session: Session, key: str, channel: MessageChannel) -> list[TemplateVersionRead]:
    template = require(session, key, channel)
    return [
        TemplateVersionRead(version=v.version, locales=v.locales, created_at=v.created_at)
        for v in repository.list_versions(session, template.id)
    ]


def delete(session: Session, key: str, channel: MessageChannel) -> None:
    repository.delete_template(session, require(session, key, channel))
    session.flush()


# Templates by key, then channel, each with its current version: what a send renders from.
CurrentTemplates = dict[str, dict[MessageChannel, tuple[Template, TemplateVersion]]]


def current_by_key(session: Session, keys: Collection[str]) -> CurrentTemplates:
    """Each key's templates by channel, with their current versions, in one read."""
    found: CurrentTemplates = {key: {} for key in keys}
    for template, version in repository.current_templates(session, keys):
        found[template.key][MessageChannel(template.channel)] = (template, version)
    return found


def by_key(session: Session, key: str) -> dict[MessageChannel, Template]:
    """The template of each channel for one purpose."""
    return {t.channel: t for t in repository.templates_by_key(session, key)}


def compiled(
    template: Template, version: TemplateVersion, locale: str
) -> rendering.CompiledTemplate:
    """The compiled form of one locale of a version, from the cache when it is there."""
    cache_key = (template.id, version.version, locale)
    with _compiled_lock:
        found = _compiled.get(cache_key)
        if found is not None:
            _compiled.move_to_end(cache_key)
            return found
    made = rendering.compile_source(template.channel, version.locales[locale])
    with _compiled_lock:
        _compiled[cache_key] = made
        while len(_compiled) > _CACHE_SIZE:
            _compiled.popitem(last=False)
    return made


def locale_for(template: Template, version: TemplateVersion, wanted: str | None) -> str:
    return rendering.pick_locale(version.locales.keys(), wanted, template.default_locale)
