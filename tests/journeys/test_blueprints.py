"""The shipped journey blueprints: each loads and compiles, sends only templates it ships and
messages would accept, renders them strictly in English and German with its trigger's
example, documents every event it reads or writes, and has its section in the docs.

A template in a journey renders with the trigger's properties as `event` (not those of an
event a wait heard), so the render test uses only the trigger's example: a template reading
a property the trigger does not carry fails here, not at send time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from regulars.config import Settings
from regulars.errors import NotFound
from regulars.journeys import blueprints
from regulars.journeys.blueprints import API_RUN, Blueprint, BlueprintInvalid
from regulars.journeys.definition import (
    ApiTrigger,
    EventDateTrigger,
    EventTrigger,
    ExitOnEvent,
    ExitOnSegment,
    ScheduleTrigger,
    SegmentTrigger,
)
from regulars.journeys.graph import compile_graph
from regulars.journeys.nodes import Branch, Emit, Send, Wait
from regulars.messages import rendering, templates
from regulars.messages.models import Category, MessageChannel
from regulars.messages.rendering import RenderContext
from regulars.segments.builtin import builtin_segments
from regulars.segments.rules import SegmentCondition, dependencies, parse_rule, walk

DOCS = Path(__file__).resolve().parents[2] / "docs" / "journey-blueprints.md"
BLUEPRINTS = blueprints.all_blueprints()
KEYS = [blueprint.key for blueprint in BLUEPRINTS]
LOCALES = {"en", "de"}
CUSTOMERS = (
    {"id": "01J0000000000000000000000A", "email": "ann@example.com", "first_name": "Ann"},
    {"id": "01J0000000000000000000000B", "email": "kim@example.com", "first_name": None},
)
MAX_SMS_SEGMENTS = 3

each = pytest.mark.parametrize("blueprint", BLUEPRINTS, ids=KEYS)


def _sends(blueprint: Blueprint) -> list[Send]:
    graph = compile_graph(blueprint.definition)
    return [node for node in graph.nodes.values() if isinstance(node, Send)]


def _channels(blueprint: Blueprint, key: str) -> set[MessageChannel]:
    return {t.channel for t in blueprint.templates if t.key == key}


def _trigger_event(blueprint: Blueprint) -> str | None:
    """The name the trigger's properties are documented under, if it has any."""
    trigger = compile_graph(blueprint.definition).definition.trigger
    if isinstance(trigger, EventTrigger | EventDateTrigger):
        return trigger.event
    return API_RUN if isinstance(trigger, ApiTrigger) else None


def _trigger_example(blueprint: Blueprint) -> dict[str, Any]:
    """What `event` holds in the journey's templates: the trigger's properties."""
    spec = blueprint.event(_trigger_event(blueprint) or "")
    return dict(spec.example) if spec is not None else {}


def _events_read(blueprint: Blueprint) -> set[str]:
    graph = compile_graph(blueprint.definition)
    definition = graph.definition
    names = {c.event for c in definition.exit if isinstance(c, ExitOnEvent)}
    if isinstance(definition.trigger, EventTrigger | EventDateTrigger):
        names.add(definition.trigger.event)
    if definition.goal is not None:
        names.add(definition.goal.event)
    for node in graph.nodes.values():
        if isinstance(node, Wait):
            names.add(node.event)
        elif isinstance(node, Branch):
            names |= dependencies(parse_rule(node.condition)).event_names
    return names


# --- the set of blueprints, and loading ---


def test_the_business_blueprints_are_all_shipped() -> None:
    assert blueprints.names() == [
        "abandoned-checkout",
        "birthday",
        "cross-sell",
        "new-collection",
        "order-updates",
        "pickup",
        "returns",
        "service-alert",
        "welcome",
        "win-back",
    ]
    assert blueprints.names() == KEYS


def test_an_unknown_blueprint_is_not_found_and_the_error_names_the_known_ones() -> None:
    with pytest.raises(NotFound) as caught:
        blueprints.load("black-friday")
    assert "order-updates" in caught.value.message
    assert caught.value.details["known"] == blueprints.names()
    assert caught.value.status == 404


def test_a_path_is_not_a_blueprint_key() -> None:
    with pytest.raises(NotFound):
        blueprints.load("../definition")


MINIMAL = """
key: tiny
name: Tiny
description: One branch.
definition:
  trigger: {type: api}
  start: b
  nodes:
    b:
      type: branch
      condition: {type: fact, field: orders_count, op: gte, value: 1}
      %s: e
    e: {type: exit}
"""


def test_a_bare_yes_key_is_the_edge_yes_not_true() -> None:
    for spelling in ('"yes"', "yes"):
        parsed = blueprints.parse(MINIMAL % spelling, source="tiny.yaml")
        assert parsed.definition["nodes"]["b"]["yes"] == "e"


def test_an_unquoted_date_and_time_stay_text() -> None:
    text = MINIMAL.replace("{type: api}", "{type: schedule, segment: s, at: 2026-12-01 09:00:00}")
    parsed = blueprints.parse(text % "yes", source="tiny.yaml")
    assert parsed.definition["trigger"]["at"] == "2026-12-01 09:00:00"
    assert json.loads(json.dumps(parsed.definition)) == parsed.definition


def test_a_misspelt_field_is_refused_with_its_place() -> None:
    text = (MINIMAL % '"yes"').replace("description:", "descripton:")
    with pytest.raises(BlueprintInvalid, match=r"tiny\.yaml: (description|descripton): "):
        blueprints.parse(text, source="tiny.yaml")


# --- each blueprint ---


@each
def test_the_definition_compiles_and_is_plain_json(blueprint: Blueprint) -> None:
    compile_graph(blueprint.definition)
    assert json.loads(json.dumps(blueprint.definition)) == blueprint.definition


@each
def test_branch_conditions_are_valid_segment_rules(blueprint: Blueprint) -> None:
    for node in compile_graph(blueprint.definition).nodes.values():
        if isinstance(node, Branch):
            parse_rule(node.condition)


@each
def test_every_send_uses_a_template_the_blueprint_ships(blueprint: Blueprint) -> None:
    for send in _sends(blueprint):
        channels = _channels(blueprint, send.template)
        if send.channel == "auto":
            assert channels, f"no template {send.template!r}"
        else:
            assert MessageChannel(send.channel) in channels, (send.template, send.channel)


@each
def test_every_template_shipped_is_sent(blueprint: Blueprint) -> None:
    sent = {send.template for send in _sends(blueprint)}
    assert {t.key for t in blueprint.templates} <= sent


@each
def test_templates_pass_the_check_messages_runs_before_saving(blueprint: Blueprint) -> None:
    pairs = [(t.key, t.channel) for t in blueprint.templates]
    assert len(pairs) == len(set(pairs)), "one template per key and channel"
    for template in blueprint.templates:
        templates.check(template.channel, template.template)


@each
def test_templates_come_in_english_and_german(blueprint: Blueprint) -> None:
    for template in blueprint.templates:
        assert set(template.template.locales) == LOCALES, template.key
        assert template.template.default_locale == "en"


@each
def test_a_template_key_has_one_category_and_topic_on_every_channel(blueprint: Blueprint) -> None:
    kinds: dict[str, set[tuple[Category, str]]] = {}
    for template in blueprint.templates:
        kinds.setdefault(template.key, set()).add(
            (template.template.category, template.template.topic)
        )
    assert all(len(found) == 1 for found in kinds.values()), kinds
    for key, ((category, topic),) in kinds.items():
        if category is Category.MARKETING:
            assert topic, f"{key}: a marketing template has a consent topic"
    for send in _sends(blueprint):
        if send.category is not None:
            assert {send.category} == {c.value for c, _ in kinds[send.template]}, send.template


@each
def test_transactional_updates_on_auto_can_go_by_email_or_sms(blueprint: Blueprint) -> None:
    for send in _sends(blueprint):
        first = next(t for t in blueprint.templates if t.key == send.template)
        if send.channel == "auto" and first.template.category is Category.TRANSACTIONAL:
            wanted = {MessageChannel.EMAIL, MessageChannel.SMS}
            assert wanted <= _channels(blueprint, send.template), send.template


def _trigger_optional(blueprint: Blueprint) -> list[str]:
    spec = blueprint.event(_trigger_event(blueprint) or "")
    return spec.optional if spec is not None else []


@each
@pytest.mark.parametrize("optional", ["given", "left out"])
def test_templates_render_strictly_with_the_trigger_example_in_both_locales(
    blueprint: Blueprint, optional: str
) -> None:
    event = _trigger_example(blueprint)
    if optional == "left out":
        event = {k: v for k, v in event.items() if k not in _trigger_optional(blueprint)}
    sent = {send.template for send in _sends(blueprint)}
    for template in (t for t in blueprint.templates if t.key in sent):
        for locale, source in template.template.locales.items():
            compiled = rendering.compile_source(template.channel, source)
            for customer in CUSTOMERS:
                variables = {
                    "customer": customer,
                    "traits": {},
                    "facts": {"orders_count": 1},
                    "event": event,
                    "links": {
                        "unsubscribe": "https://u.example",
                        "preferences": "https://p.example",
                    },
                }
                context = RenderContext(variables, locale=locale, timezone="Europe/Berlin")
                content = rendering.render(compiled, context, strict=True)
                text = json.dumps(content, ensure_ascii=False)
                assert "{{" not in text and "{%" not in text, (template.key, locale)
                if template.channel is MessageChannel.SMS:
                    segments = content["segments"]
                    assert isinstance(segments, int) and segments <= MAX_SMS_SEGMENTS, template.key


@each
def test_every_event_the_journey_reads_is_documented(blueprint: Blueprint) -> None:
    documented = {spec.name for spec in blueprint.events}
    assert _events_read(blueprint) <= documented
    trigger_event = _trigger_event(blueprint)
    assert trigger_event is None or trigger_event in documented


@each
def test_properties_matched_on_are_documented_on_both_events(blueprint: Blueprint) -> None:
    graph = compile_graph(blueprint.definition)
    on_trigger = blueprint.event(_trigger_event(blueprint) or "")
    matched: list[tuple[str, list[str]]] = [
        (c.event, c.match) for c in graph.definition.exit if isinstance(c, ExitOnEvent)
    ]
    matched += [(n.event, n.match) for n in graph.nodes.values() if isinstance(n, Wait)]
    keys = [graph.definition.entry.key] if graph.definition.entry.key else []
    for event, names in [*matched, (None, keys)]:
        for name in names:
            assert on_trigger is not None and name in on_trigger.properties, name
            spec = blueprint.event(event) if event else on_trigger
            assert spec is not None and name in spec.properties, (event, name)


@each
def test_every_event_the_journey_emits_is_documented_with_its_properties(
    blueprint: Blueprint,
) -> None:
    for node in compile_graph(blueprint.definition).nodes.values():
        if isinstance(node, Emit):
            spec = blueprint.event(node.event)
            assert spec is not None, node.event
            assert set(node.properties) <= set(spec.properties), node.event


@each
def test_examples_show_every_documented_property_and_no_other(blueprint: Blueprint) -> None:
    for spec in blueprint.events:
        assert set(spec.example) == set(spec.properties), spec.name
        assert set(spec.optional) <= set(spec.properties), spec.name


@each
def test_segments_named_are_built_in_since_a_blueprint_ships_none(blueprint: Blueprint) -> None:
    known = {segment.key for segment in builtin_segments(Settings())}
    graph = compile_graph(blueprint.definition)
    named = [c.segment for c in graph.definition.exit if isinstance(c, ExitOnSegment)]
    if isinstance(graph.definition.trigger, SegmentTrigger | ScheduleTrigger):
        named.append(graph.definition.trigger.segment)
    for node in graph.nodes.values():
        if isinstance(node, Branch):
            rule = parse_rule(node.condition)
            named += [n.segment for n in walk(rule) if isinstance(n, SegmentCondition)]
    assert set(named) <= known


def test_win_back_starts_on_the_built_in_at_risk_stage() -> None:
    trigger = blueprints.load("win-back").definition["trigger"]
    assert trigger == {"type": "segment", "segment": "lifecycle_at_risk", "on": "entered"}


# --- the docs ---


def _sections() -> dict[str, str]:
    sections: dict[str, str] = {}
    heading = ""
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            heading = line
            sections[heading] = ""
        elif heading:
            sections[heading] += line + "\n"
    return sections


def test_the_docs_have_one_section_per_blueprint() -> None:
    headings = [h for h in _sections() if h.startswith("## `")]
    assert sorted(h.split("`")[1] for h in headings) == blueprints.names()


@each
def test_the_docs_section_names_the_events_properties_and_templates(blueprint: Blueprint) -> None:
    found = [text for heading, text in _sections().items() if f"`{blueprint.key}`" in heading]
    assert len(found) == 1
    section = found[0]
    for spec in blueprint.events:
        assert spec.name in section, spec.name
        for name in spec.properties:
            assert f"`{name}`" in section, (spec.name, name)
    for spec in blueprint.events:
        for name in spec.optional:
            rows = [line for line in section.splitlines() if f"| `{name}` |" in line]
            assert any("Optional" in row for row in rows), (spec.name, name)
    for template in blueprint.templates:
        assert f"`{template.key}`" in section, template.key
    assert f"regulars journeys install {blueprint.key}" in section
