"""The journeys regulars ships ready to install: welcome series, abandoned checkout, order
updates, returns, pickup, service alert, cross-sell, birthday, new collection and win-back.

Each blueprint is one YAML file beside this module (`order-updates.yaml`) holding:

- `key`, `name`, `description`: what the journey is called and does;
- `events`: the events it reads or emits, each with its properties (name -> one-line
  meaning), the `optional` ones, and an `example` of them. For an `api` trigger, the entry
  named `API run` documents the properties given to `POST /api/journeys/{key}/runs`;
- `templates`: the message templates its send nodes use, one per key and channel, in the
  shape `regulars.messages.schemas.TemplateWrite` takes;
- `definition`: the journey definition (`regulars.journeys.definition`).

This module only reads them (docs/journey-blueprints.md describes each one); installing
(saving the templates not there yet, then creating and publishing the journey) is the
journeys service's. YAML 1.1 reads a bare `yes`, `no` or `on` key as a boolean and an
unquoted date as a date: the files quote them, and `parse` refuses either, naming the place.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib.resources import files
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from regulars.errors import NotFound
from regulars.journeys.files import read_yaml
from regulars.messages.models import MessageChannel
from regulars.messages.schemas import TemplateWrite

API_RUN = "API run"  # the `events` entry documenting an api trigger's run properties
_SUFFIX = ".yaml"


class EventSpec(BaseModel):
    """An event a blueprint reads (or emits): its properties (name -> meaning), the ones the
    journey and its templates do without, and an example of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1)
    properties: dict[str, str] = Field(default_factory=dict)
    optional: list[str] = Field(default_factory=list)
    example: dict[str, Any] = Field(default_factory=dict)


class BlueprintTemplate(BaseModel):
    """A template a blueprint's send nodes use, saved under `key` for `channel`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,99}$")
    channel: MessageChannel
    template: TemplateWrite


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,99}$")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=2000)
    events: list[EventSpec] = Field(default_factory=list)
    templates: list[BlueprintTemplate] = Field(default_factory=list)
    definition: dict[str, Any]


@dataclass(frozen=True)
class Blueprint:
    """A journey ready to install, with the templates it sends and the events it expects."""

    key: str
    name: str
    description: str
    events: list[EventSpec]
    templates: list[BlueprintTemplate]
    definition: dict[str, Any]

    def event(self, name: str) -> EventSpec | None:
        """The documentation of one event, by name."""
        return next((spec for spec in self.events if spec.name == name), None)


class BlueprintInvalid(ValueError):
    """A blueprint file that does not have the shape above; the message says where."""


def names() -> list[str]:
    """The keys of the shipped blueprints, sorted."""
    return sorted(
        entry.name.removesuffix(_SUFFIX)
        for entry in files(__name__).iterdir()
        if entry.name.endswith(_SUFFIX) and entry.is_file()
    )


def load(key: str) -> Blueprint:
    """The shipped blueprint `key`; NotFound lists the known ones."""
    known = names()
    if key not in known:
        raise NotFound(
            f"no blueprint {key!r}; the blueprints are: {', '.join(known)}",
            details={"blueprint": key, "known": known},
        )
    return copy.deepcopy(_shipped(key))


@cache
def _shipped(key: str) -> Blueprint:
    """Parsed once per process: the files ship inside the package and never change while it
    runs (parsing and validating the ten of them took 175 ms, on every journeys page)."""
    text = files(__name__).joinpath(key + _SUFFIX).read_text(encoding="utf-8")
    blueprint = parse(text, source=key + _SUFFIX)
    if blueprint.key != key:
        raise BlueprintInvalid(f"{key}{_SUFFIX}: key is {blueprint.key!r}, not the file's name")
    return blueprint


def all_blueprints() -> list[Blueprint]:
    """Every shipped blueprint, by key."""
    return [load(key) for key in names()]


def parse(text: str, *, source: str) -> Blueprint:
    """A blueprint from its YAML; BlueprintInvalid names `source` and the place of a problem."""
    try:
        raw = read_yaml(text)
    except yaml.YAMLError as exc:
        raise BlueprintInvalid(f"{source}: not YAML: {exc}") from None
    _check_plain(raw, source, "")
    try:
        found = _File.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"])
        raise BlueprintInvalid(f"{source}: {where}: {error['msg']}") from None
    return Blueprint(
        key=found.key,
        name=found.name,
        description=found.description,
        events=found.events,
        templates=found.templates,
        definition=found.definition,
    )


def _check_plain(value: object, source: str, path: str) -> None:
    """Text keys and JSON values only. YAML 1.1 reads a bare `yes:` key as True and an
    unquoted 2026-12-01 as a date, silently; the definition is stored as JSON."""
    place = f"{path}: " if path else ""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise BlueprintInvalid(
                    f"{source}: {place}the key {key!r} is read as {type(key).__name__}, not "
                    'text; quote it ("yes":, "no":, "on":)'
                )
            _check_plain(item, source, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_plain(item, source, f"{path}.{index}")
    elif isinstance(value, date):
        raise BlueprintInvalid(f"{source}: {place}quote dates and times ({value.isoformat()})")
