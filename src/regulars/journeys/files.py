"""Journeys as YAML files: read the way an author means them.

YAML 1.1 (what PyYAML speaks) reads a bare `yes:` or `on:` key as true, `09:00` as the
number 540 (base 60) and `2026-12-01` as a date: a branch's `yes`/`no` edges, a trigger's
`on` and every time of day would silently change meaning. This reader resolves only the
YAML 1.2 core scalars (true/false, null, decimal numbers); everything else stays text.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class _JourneyLoader(yaml.SafeLoader):
    pass


_JourneyLoader.yaml_implicit_resolvers = {}
for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items():
    kept = [
        (tag, pattern)
        for tag, pattern in resolvers
        if tag
        not in (
            "tag:yaml.org,2002:bool",
            "tag:yaml.org,2002:int",
            "tag:yaml.org,2002:float",
            "tag:yaml.org,2002:timestamp",
        )
    ]
    if kept:
        _JourneyLoader.yaml_implicit_resolvers[first] = kept

_JourneyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_JourneyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789")
)
_JourneyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
)


def read_yaml(text: str) -> Any:
    """The document, with YAML 1.2 core scalars only (yaml.YAMLError when it is not YAML)."""
    return yaml.load(text, Loader=_JourneyLoader)


def write_yaml(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
