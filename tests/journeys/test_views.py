"""The journeys pages: the list and its blueprints, one journey drawn as a graph with its
counts, publishing, pausing and resuming by role, and the run inspector."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from regulars.db import session_scope
from regulars.identity.models import Role
from regulars.journeys import blueprints
from regulars.journeys import service as journeys
from regulars.journeys.graph import compile_graph
from regulars.journeys.schemas import RunCreate
from regulars.journeys.views import graph_option
from regulars.kit import clock
from regulars.messages.models import Delivery
from tests.journeys.conftest import JourneyFactory, run_worker
from tests.messages.conftest import CustomerFactory, TemplateFactory
from tests.staff import signed_in_as

# hello (send) -> later (delay) -> bye (send); a split sends half the runs straight to bye.
DEFINITION: dict[str, Any] = {
    "trigger": {"type": "api"},
    "start": "hello",
    "nodes": {
        "hello": {"type": "send", "template": "hello", "channel": "email", "next": "later"},
        "later": {"type": "delay", "duration": "1d", "next": "bye"},
        "bye": {"type": "send", "template": "bye", "channel": "email"},
    },
}
_CHART = re.compile(r"data-chart='([^']*)'")


def _graph_option(text: str) -> dict[str, Any]:
    found = _CHART.search(text)
    assert found is not None, "no chart on the page"
    option: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return option


def _status(key: str) -> tuple[str, int | None]:
    with session_scope() as session:
        found = journeys.get(session, key)
    assert found is not None
    return found.status, found.live_version


def _start(key: str, customer_id: str) -> str:
    with session_scope() as session:
        return journeys.start_run(session, key, RunCreate(customer_id=customer_id)).id


@pytest.fixture
def greeted(
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    customer: CustomerFactory,
    template: TemplateFactory,
) -> list[str]:
    """The `greet` journey live with three runs sent `hello` and waiting at `later`."""
    template("hello", "email")
    template("bye", "email")
    journey("greet", DEFINITION)
    people = [customer(f"person-{n}", email=f"person{n}@example.com") for n in range(3)]
    for person in people:
        _start("greet", person)
    run_worker()
    return people


def test_empty_state_offers_the_blueprints(client: TestClient) -> None:
    signed_in_as(client, Role.MARKETER)
    answer = client.get("/journeys")
    assert answer.status_code == 200
    assert "regulars journeys install abandoned-checkout" in answer.text
    for blueprint in blueprints.all_blueprints():
        assert html.escape(blueprint.name) in answer.text
    assert 'action="/journeys/blueprints/abandoned-checkout"' in answer.text


def test_an_analyst_sees_no_install_button(client: TestClient) -> None:
    signed_in_as(client, Role.ANALYST)
    answer = client.get("/journeys")
    assert answer.status_code == 200
    assert 'action="/journeys/blueprints/' not in answer.text


def test_installed_blueprint_is_listed_as_live(client: TestClient) -> None:
    csrf = signed_in_as(client, Role.MARKETER)
    answer = client.post(
        "/journeys/blueprints/abandoned-checkout",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/journeys/abandoned-checkout?done=installed"
    assert _status("abandoned-checkout") == ("live", 1)
    listed = client.get("/journeys").text
    assert 'href="/journeys/abandoned-checkout"' in listed
    assert '<span class="badge live">live</span>' in listed
    assert "Checkout Started" in listed  # the trigger in words
    assert 'action="/journeys/blueprints/abandoned-checkout"' not in listed  # installed


def test_installing_twice_answers_409_with_the_message(client: TestClient) -> None:
    csrf = signed_in_as(client, Role.MARKETER)
    client.post("/journeys/blueprints/welcome", data={"csrf_token": csrf})
    again = client.post("/journeys/blueprints/welcome", data={"csrf_token": csrf})
    assert again.status_code == 409
    assert "exists" in again.text


def test_installing_without_the_csrf_token_is_403_and_installs_nothing(
    client: TestClient,
) -> None:
    signed_in_as(client, Role.MARKETER)
    answer = client.post("/journeys/blueprints/welcome", data={})
    assert answer.status_code == 403
    with session_scope() as session:
        assert journeys.get(session, "welcome") is None


def test_the_list_counts_each_journeys_runs(
    client: TestClient, greeted: list[str], journey: JourneyFactory
) -> None:
    journey("quiet", DEFINITION)  # live, no runs: its row must not take greet's counts
    signed_in_as(client, Role.ANALYST)
    listed = client.get("/journeys").text
    rows = {
        key: re.findall(r"<td>([^<]*)</td>", row)
        for row in listed.split("<tr>")[1:]
        for key in re.findall(r'<small class="muted">([\w-]+)</small>', row)[:1]
    }
    runs = str(len(greeted))
    # live version, in flight, entered, converted, conversion rate, uplift (no holdout)
    assert rows["greet"][-6:] == ["1", runs, runs, "0", "0.0%", "-"]
    assert rows["quiet"][-6:] == ["1", "0", "0", "0", "-", "-"]


def test_graph_draws_every_node_with_its_counts(client: TestClient, greeted: list[str]) -> None:
    signed_in_as(client, Role.ANALYST)
    answer = client.get("/journeys/greet")
    assert answer.status_code == 200
    series = _graph_option(answer.text)["series"][0]
    assert series["type"] == "graph" and series["layout"] == "none"
    nodes = {node["id"]: node for node in series["data"]}
    assert set(nodes) == set(DEFINITION["nodes"])
    runs = len(greeted)
    assert nodes["hello"]["value"] == runs
    assert f"{runs} moved on" in nodes["hello"]["label"]["formatter"]
    assert f"{runs} waiting" in nodes["later"]["label"]["formatter"]
    assert nodes["bye"]["value"] == 0
    # layers from the start, top down
    assert nodes["hello"]["y"] < nodes["later"]["y"] < nodes["bye"]["y"]
    links = {(link["source"], link["target"]) for link in series["links"]}
    assert links == {("hello", "later"), ("later", "bye")}


def test_graph_edges_are_named_after_branches_and_timeouts() -> None:
    blueprint = blueprints.load("abandoned-checkout")
    option = graph_option(compile_graph(blueprint.definition), [])
    labels = {
        (link["source"], link["target"]): link["label"]["formatter"]
        for link in option["series"][0]["links"]
    }
    assert labels[("wait_order", "remind")] == "timeout"
    assert labels[("wait_order", "ordered")] == "heard"
    assert labels[("first_order", "remind_offer")] == "yes"
    assert labels[("first_order", "remind_again")] == "no"
    assert labels[("remind", "one_day")] == ""  # the only way on


def test_journey_page_lists_recent_runs_and_filters_by_customer(
    client: TestClient, greeted: list[str]
) -> None:
    signed_in_as(client, Role.AGENT)
    page = client.get("/journeys/greet").text
    for person in greeted:
        assert f'href="/customers/{person}"' in page
    only = client.get("/journeys/greet", params={"customer": "person-1"}).text
    assert f'href="/customers/{greeted[1]}"' in only
    assert f'href="/customers/{greeted[0]}"' not in only
    nobody = client.get("/journeys/greet", params={"customer": "nobody"}).text
    assert "No runs of customer" in nobody


def test_marketer_publishes_pauses_and_resumes(
    client: TestClient, journey: JourneyFactory, template: TemplateFactory
) -> None:
    template("hello", "email")
    template("bye", "email")
    journey("greet", DEFINITION, publish=False)
    csrf = signed_in_as(client, Role.MARKETER)
    assert _status("greet") == ("draft", None)
    steps = [
        ("publish", "published", ("live", 1)),
        ("pause", "paused", ("paused", 1)),
        ("resume", "resumed", ("live", 1)),
    ]
    for verb, done, expected in steps:
        answer = client.post(
            f"/journeys/greet/{verb}", data={"csrf_token": csrf}, follow_redirects=False
        )
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == f"/journeys/greet?done={done}"
        assert _status("greet") == expected
    assert "Resumed" in client.get("/journeys/greet?done=resumed").text


@pytest.mark.parametrize("role", [Role.ANALYST, Role.AGENT])
def test_publish_and_pause_need_journeys_write(
    client: TestClient, journey: JourneyFactory, template: TemplateFactory, role: Role
) -> None:
    template("hello", "email")
    template("bye", "email")
    journey("greet", DEFINITION, publish=False)
    journey("live-one", DEFINITION)
    csrf = signed_in_as(client, role)
    assert 'action="/journeys/greet/publish"' not in client.get("/journeys/greet").text
    assert client.post("/journeys/greet/publish", data={"csrf_token": csrf}).status_code == 403
    assert client.post("/journeys/live-one/pause", data={"csrf_token": csrf}).status_code == 403
    assert _status("greet") == ("draft", None)
    assert _status("live-one") == ("live", 1)


def test_publish_without_the_csrf_token_is_403(
    client: TestClient, journey: JourneyFactory, template: TemplateFactory
) -> None:
    template("hello", "email")
    template("bye", "email")
    journey("greet", DEFINITION, publish=False)
    signed_in_as(client, Role.MARKETER)
    assert client.post("/journeys/greet/publish", data={}).status_code == 403
    assert _status("greet") == ("draft", None)


def test_publishing_an_invalid_draft_shows_the_problem(
    client: TestClient, journey: JourneyFactory
) -> None:
    journey("greet", DEFINITION, publish=False)  # neither template exists
    csrf = signed_in_as(client, Role.MARKETER)
    answer = client.post("/journeys/greet/publish", data={"csrf_token": csrf})
    assert answer.status_code == 422
    assert "hello" in answer.text and 'class="alert"' in answer.text
    assert _status("greet") == ("draft", None)


def test_run_inspector_shows_the_path_taken(
    client: TestClient, greeted: list[str], frozen_clock: clock.FrozenClock
) -> None:
    with session_scope() as session:
        run_id = journeys.runs_of_customer(session, greeted[0]).items[0].id
    frozen_clock.advance(timedelta(days=1, minutes=1))  # past the delay
    run_worker()
    signed_in_as(client, Role.AGENT)
    page = client.get(f"/journeys/runs/{run_id}")
    assert page.status_code == 200
    with session_scope() as session:
        sent = session.scalars(select(Delivery.id).where(Delivery.customer_id == greeted[0])).all()
    assert len(sent) == 2  # hello, then bye after the day's delay
    for delivery_id in sent:
        assert delivery_id in page.text
    steps = re.findall(r"<code>(hello|later|bye)</code></span>", page.text)
    assert steps == ["hello", "later", "bye"]
    assert f'href="/customers/{greeted[0]}"' in page.text
    assert '<span class="badge">completed</span>' in page.text


def test_unknown_run_and_journey_are_404(client: TestClient) -> None:
    signed_in_as(client, Role.ANALYST)
    assert client.get("/journeys/runs/01NOPE").status_code == 404
    assert client.get("/journeys/nope").status_code == 404
