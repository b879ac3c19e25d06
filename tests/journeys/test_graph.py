"""A definition compiled as a graph: node kinds, edges, reachability, loops, error paths."""

from __future__ import annotations

from typing import Any

import pytest

from regulars.journeys.graph import DefinitionInvalid, compile_graph
from regulars.journeys.nodes import Branch, Delay, Exit, Send, Wait

BUILT_IN_KINDS = [
    "branch",
    "delay",
    "emit",
    "exit",
    "holdout",
    "send",
    "split",
    "update_traits",
    "wait",
    "webhook",
]


def journey(nodes: dict[str, Any], *, start: str = "welcome", **rest: Any) -> dict[str, Any]:
    return {
        "trigger": {"type": "event", "event": "Signed Up"},
        "start": start,
        "nodes": nodes,
        **rest,
    }


def errors_of(raw: object) -> list[dict[str, str]]:
    with pytest.raises(DefinitionInvalid) as invalid:
        compile_graph(raw)
    return invalid.value.errors


def send(template: str, next_node: str | None = None) -> dict[str, Any]:
    return {"type": "send", "template": template, "next": next_node}


ONBOARDING = journey(
    {
        "welcome": send("welcome", "bought"),
        "bought": {
            "type": "wait",
            "event": "Order Completed",
            "timeout": "3d",
            "next": "thanks",
            "timeout_next": "check",
        },
        "check": {
            "type": "branch",
            "condition": {"type": "consent", "channel": "email"},
            "yes": "remind",
            "no": "end",
        },
        "remind": send("reminder", "pause"),
        "pause": {"type": "delay", "duration": "1d", "next": "bought"},
        "thanks": send("thanks", "end"),
        "end": {"type": "exit"},
    },
    entry={"reentry": "never"},
    exit=[{"type": "event", "event": "Unsubscribed"}],
    goal={"event": "Order Completed", "within": "14d"},
)


def test_a_valid_definition_compiles_each_node_by_its_kind() -> None:
    graph = compile_graph(ONBOARDING)
    assert set(graph.nodes) == {"welcome", "bought", "check", "remind", "pause", "thanks", "end"}
    remind = graph.node("remind")
    assert isinstance(remind, Send)
    assert (remind.template, remind.next) == ("reminder", "pause")
    assert isinstance(graph.node("bought"), Wait)
    assert isinstance(graph.node("check"), Branch)
    assert isinstance(graph.node("pause"), Delay)
    assert isinstance(graph.node("end"), Exit)
    assert graph.definition.start == "welcome"
    assert graph.definition.goal is not None
    assert graph.definition.goal.within == "14d"


def test_an_unknown_node_type_lists_the_known_kinds() -> None:
    errors = errors_of(journey({"welcome": {"type": "fax", "number": "+4930"}}))
    assert [e["path"] for e in errors] == ["nodes.welcome.type"]
    message = errors[0]["message"]
    assert message.startswith("unknown node type 'fax'; use one of ")
    known = message.removeprefix("unknown node type 'fax'; use one of ").split(", ")
    assert set(BUILT_IN_KINDS) <= set(known)
    assert known == sorted(known)


@pytest.mark.parametrize("body", [{}, {"type": 3}, {"type": None}])
def test_a_node_without_a_type_name_is_refused(body: dict[str, Any]) -> None:
    errors = errors_of(journey({"welcome": body}))
    assert errors[0]["path"] == "nodes.welcome.type"
    assert errors[0]["message"].startswith("unknown node type")


@pytest.mark.parametrize(
    ("nodes", "path"),
    [
        ({"welcome": send("welcome", "nowhere")}, "nodes.welcome.next"),
        (
            {
                "welcome": {
                    "type": "wait",
                    "event": "Order Completed",
                    "timeout": "1d",
                    "timeout_next": "nowhere",
                }
            },
            "nodes.welcome.timeout_next",
        ),
        (
            {"welcome": {"type": "branch", "condition": {}, "no": "nowhere"}},
            "nodes.welcome.no",
        ),
        (
            {
                "welcome": {
                    "type": "split",
                    "paths": [
                        {"name": "a", "percent": 50},
                        {"name": "b", "percent": 50, "next": "nowhere"},
                    ],
                }
            },
            "nodes.welcome.paths.b",
        ),
    ],
)
def test_an_edge_to_a_missing_node_is_named_by_its_path(nodes: dict[str, Any], path: str) -> None:
    errors = errors_of(journey(nodes))
    assert errors == [{"path": path, "message": "no node 'nowhere'"}]


def test_a_missing_start_node_is_reported() -> None:
    errors = errors_of(journey({"end": {"type": "exit"}}, start="begin"))
    assert errors == [{"path": "start", "message": "no node 'begin'"}]


def test_every_problem_is_listed_and_the_first_one_is_the_message() -> None:
    with pytest.raises(DefinitionInvalid) as invalid:
        compile_graph(journey({"welcome": send("welcome", "gone"), "later": send("later", "lost")}))
    assert invalid.value.errors == [
        {"path": "nodes.welcome.next", "message": "no node 'gone'"},
        {"path": "nodes.later.next", "message": "no node 'lost'"},
    ]
    assert str(invalid.value) == "nodes.welcome.next: no node 'gone'"


def test_a_node_no_path_reaches_is_reported() -> None:
    errors = errors_of(
        journey(
            {"welcome": send("welcome", "end"), "orphan": send("x", "end"), "end": {"type": "exit"}}
        )
    )
    assert errors == [
        {"path": "nodes.orphan", "message": "no path from the start reaches this node"}
    ]


def test_a_loop_through_instant_nodes_only_is_refused() -> None:
    errors = errors_of(
        journey(
            {
                "welcome": send("welcome", "check"),
                "check": {"type": "branch", "condition": {}, "yes": "welcome", "no": "end"},
                "end": {"type": "exit"},
            }
        )
    )
    assert len(errors) == 1
    assert errors[0]["message"] == "a loop without a delay or wait: check -> welcome -> check"
    assert errors[0]["path"] == "nodes.check"


def test_a_node_pointing_at_itself_is_a_loop() -> None:
    errors = errors_of(journey({"welcome": send("welcome", "welcome")}))
    assert errors == [
        {"path": "nodes.welcome", "message": "a loop without a delay or wait: welcome -> welcome"}
    ]


def test_a_loop_entered_partway_is_named_from_where_it_closes() -> None:
    # a -> b -> c -> b: the loop is b, c; a only leads into it.
    errors = errors_of(
        journey(
            {
                "a": send("a", "b"),
                "b": send("b", "c"),
                "c": {"type": "branch", "condition": {}, "yes": "b", "no": "end"},
                "end": {"type": "exit"},
            },
            start="a",
        )
    )
    assert [e["message"] for e in errors] == ["a loop without a delay or wait: b -> c -> b"]
    assert errors[0]["path"] == "nodes.b"


@pytest.mark.parametrize(
    "holder",
    [
        {"type": "delay", "duration": "1d", "next": "welcome"},
        {"type": "delay", "at": "09:00", "next": "welcome"},
        {"type": "wait", "event": "Order Completed", "timeout": "1d", "timeout_next": "welcome"},
    ],
    ids=["delay-duration", "delay-at", "wait"],
)
def test_a_loop_through_a_delay_or_wait_is_accepted(holder: dict[str, Any]) -> None:
    graph = compile_graph(
        journey(
            {
                "welcome": send("welcome", "check"),
                "check": {"type": "branch", "condition": {}, "yes": "hold", "no": "end"},
                "hold": holder,
                "end": {"type": "exit"},
            }
        )
    )
    assert set(graph.nodes) == {"welcome", "check", "hold", "end"}


@pytest.mark.parametrize(
    "holder",
    [
        {"type": "delay", "between": ["09:00", "17:00"], "next": "welcome"},
        {"type": "delay", "duration": "0s", "next": "welcome"},
    ],
)
def test_a_loop_through_a_delay_that_lets_runs_through_is_refused(holder: dict[str, Any]) -> None:
    errors = errors_of(
        journey(
            {
                "welcome": send("welcome", "check"),
                "check": {"type": "branch", "condition": {}, "yes": "hold", "no": "end"},
                "hold": holder,
                "end": {"type": "exit"},
            }
        )
    )
    assert [e["message"] for e in errors] == [
        "a loop without a delay or wait: check -> hold -> welcome -> check"
    ]


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        ({"type": "send", "template": ""}, "nodes.remind.template", "at least 1 character"),
        ({"type": "send", "template": "t", "colour": "red"}, "nodes.remind.colour", "Extra inputs"),
        (
            {"type": "send", "template": "t", "channel": "fax"},
            "nodes.remind.channel",
            "Input should",
        ),
        (
            {"type": "wait", "event": "E", "timeout": "soon"},
            "nodes.remind.timeout",
            "duration 'soon'",
        ),
        ({"type": "delay"}, "nodes.remind", "give exactly one of duration"),
        (
            {"type": "delay", "between": ["22:00", "25:00"]},
            "nodes.remind.between.1",
            "Input should be in a valid time format",
        ),
        (
            {
                "type": "split",
                "paths": [{"name": "a", "percent": 50}, {"name": "b", "percent": 40}],
            },
            "nodes.remind",
            "the paths' percents must add up to 100",
        ),
        (
            {"type": "split", "paths": [{"name": "a", "percent": 50}, {"name": "", "percent": 50}]},
            "nodes.remind.paths.1.name",
            "at least 1 character",
        ),
    ],
)
def test_errors_inside_a_node_carry_the_node_and_field(
    body: dict[str, Any], path: str, message: str
) -> None:
    errors = errors_of(journey({"welcome": send("welcome", "remind"), "remind": body}))
    assert errors[0]["path"] == path
    assert message in errors[0]["message"]
    assert not errors[0]["message"].startswith("Value error")


def test_errors_in_several_nodes_are_all_reported() -> None:
    errors = errors_of(
        journey({"welcome": {"type": "send"}, "later": {"type": "nope"}, "end": {"type": "exit"}})
    )
    assert {e["path"] for e in errors} == {"nodes.welcome.template", "nodes.later.type"}


@pytest.mark.parametrize(
    ("trigger", "path", "message"),
    [
        ({"type": "event", "event": ""}, "trigger.event", "at least 1 character"),
        ({"type": "event", "event": "E", "colour": "red"}, "trigger.colour", "Extra inputs"),
        (
            {"type": "event_date", "event": "E", "offset": "soon"},
            "trigger.offset",
            "duration 'soon'",
        ),
        ({"type": "segment", "segment": "vip", "on": "stayed"}, "trigger.on", "Input should be"),
        (
            {"type": "anniversary", "trait": "birthday", "days_before": 90},
            "trigger.days_before",
            "less than or equal to 60",
        ),
        ({"type": "schedule", "segment": "vip"}, "trigger", "give exactly one of at"),
        ({"type": "carrier_pigeon"}, "trigger", "does not match any of the expected tags"),
    ],
)
def test_trigger_errors_name_the_field_without_the_trigger_type(
    trigger: dict[str, Any], path: str, message: str
) -> None:
    raw = journey({"welcome": {"type": "exit"}})
    raw["trigger"] = trigger
    errors = errors_of(raw)
    assert errors[0]["path"] == path
    assert message in errors[0]["message"]


def test_exit_criteria_errors_name_the_criterion_and_field() -> None:
    raw = journey(
        {"welcome": {"type": "exit"}},
        exit=[
            {"type": "event", "event": ""},
            {"type": "segment", "segment": "vip", "on": "stayed"},
            {"type": "segment"},
        ],
    )
    paths = [e["path"] for e in errors_of(raw)]
    assert paths == ["exit.0.event", "exit.1.on", "exit.2.segment"]


def test_definition_level_errors_keep_their_own_paths() -> None:
    raw = journey(
        {"welcome": {"type": "exit"}, "bad id": {"type": "exit"}},
        entry={"reentry": "interval"},
        goal={"event": "Order Completed", "within": "soon"},
    )
    errors = errors_of(raw)
    assert {e["path"] for e in errors} == {"entry", "goal.within", "nodes.bad id"}
    by_path = {e["path"]: e["message"] for e in errors}
    assert by_path["entry"] == "min_interval goes with reentry 'interval', and only with it"


def test_definition_errors_stop_before_the_nodes_are_parsed() -> None:
    raw = journey({"welcome": {"type": "fax"}})
    raw["trigger"] = {"type": "event"}
    assert [e["path"] for e in errors_of(raw)] == ["trigger.event"]


def test_a_definition_that_is_not_an_object_is_refused() -> None:
    errors = errors_of(["not", "a", "journey"])
    assert errors[0]["path"] == ""
    with pytest.raises(DefinitionInvalid, match=r"^definition: "):
        compile_graph(["not", "a", "journey"])
