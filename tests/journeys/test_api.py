"""The journeys REST API on both databases: drafts and their errors with paths, validation,
publishing and the status transitions, runs and the run inspector, statistics, blueprints
and scopes."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from httpx import Response

from regulars.journeys import blueprints
from regulars.kit import clock
from tests.journeys.conftest import JourneyFactory, Track, run_worker
from tests.messages.conftest import Api, CustomerFactory, TemplateFactory, error_of

pytestmark = pytest.mark.usefixtures("frozen_clock")

# Started by API: a hello email, a day's pause, then the end.
HELLO: dict[str, Any] = {
    "trigger": {"type": "api"},
    "start": "hello",
    "nodes": {
        "hello": {"type": "send", "template": "hello", "channel": "email", "next": "pause"},
        "pause": {"type": "delay", "duration": "1d", "next": "bye"},
        "bye": {"type": "exit"},
    },
}
# Half the runs are held out; the rest get an email. An order within a week is the goal.
HOLDOUT: dict[str, Any] = {
    "trigger": {"type": "api"},
    "goal": {"event": "Order Completed", "within": "7d"},
    "start": "holdout",
    "nodes": {
        "holdout": {"type": "holdout", "percent": 50, "next": "offer"},
        "offer": {"type": "send", "template": "hello", "channel": "email"},
    },
}


def create(api: Api, key: str, definition: dict[str, Any], **fields: Any) -> Response:
    body = {"key": key, "name": key.title(), "definition": definition, **fields}
    response: Response = api.client.post("/api/journeys", json=body, headers=api.write)
    return response


def post(api: Api, path: str, body: dict[str, Any] | None = None) -> Response:
    response: Response = api.client.post(f"/api/journeys{path}", json=body, headers=api.write)
    return response


def ok(response: Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    found: dict[str, Any] = response.json()
    return found


def get(api: Api, path: str) -> dict[str, Any]:
    return ok(api.client.get(path, headers=api.read))


def changed(definition: dict[str, Any], node: str, **fields: Any) -> dict[str, Any]:
    nodes = {**definition["nodes"], node: {**definition["nodes"][node], **fields}}
    return {**definition, "nodes": nodes}


# --- drafts ---


def test_create_get_list_and_patch_a_draft(api: Api) -> None:
    created = ok(create(api, "hello", HELLO, description="Say hello"), 201)
    assert created["status"] == "draft" and created["live_version"] is None
    assert created["draft"] == HELLO and created["description"] == "Say hello"

    found = get(api, "/api/journeys/hello")
    assert found["id"] == created["id"]
    assert get(api, f"/api/journeys/{created['id']}")["key"] == "hello"  # by id too

    patched = ok(
        api.client.patch(
            "/api/journeys/hello",
            json={"name": "Hello there", "definition": changed(HELLO, "pause", duration="2d")},
            headers=api.write,
        )
    )
    assert patched["name"] == "Hello there" and patched["description"] == "Say hello"
    assert patched["draft"]["nodes"]["pause"]["duration"] == "2d"
    assert get(api, "/api/journeys/hello")["name"] == "Hello there"


def test_journeys_list_by_key_a_page_at_a_time(api: Api) -> None:
    for key in ("c-journey", "a-journey", "b-journey"):
        ok(create(api, key, HELLO), 201)
    first = get(api, "/api/journeys?limit=2")
    assert [j["key"] for j in first["items"]] == ["a-journey", "b-journey"]
    assert first["next_cursor"]
    second = get(api, f"/api/journeys?limit=2&cursor={first['next_cursor']}")
    assert [j["key"] for j in second["items"]] == ["c-journey"]
    assert second["next_cursor"] is None
    tampered = api.client.get("/api/journeys?cursor=bm90LWEtY3Vyc29y", headers=api.read)
    assert error_of(tampered, 422)["code"] == "validation_failed"


def test_an_edge_to_a_missing_node_is_a_422_with_its_path(api: Api) -> None:
    broken = changed(HELLO, "hello", next="nowhere")
    error = error_of(create(api, "hello", broken), 422)
    assert error["code"] == "invalid_journey"
    assert error["message"] == "definition.nodes.hello.next: no node 'nowhere'"
    assert error["details"] == [
        {"path": "definition.nodes.hello.next", "message": "no node 'nowhere'"}
    ]
    assert error_of(api.client.get("/api/journeys/hello", headers=api.read), 404)

    ok(create(api, "hello", HELLO), 201)
    patched = api.client.patch(
        "/api/journeys/hello", json={"definition": broken}, headers=api.write
    )
    assert error_of(patched, 422)["details"][0]["path"] == "definition.nodes.hello.next"


def test_unknown_fields_are_422_naming_them(api: Api) -> None:
    body = {"key": "hello", "name": "Hello", "definition": HELLO, "descripton": "typo"}
    response = api.client.post("/api/journeys", json=body, headers=api.write)
    error = error_of(response, 422)
    assert error["message"].startswith("body.descripton:")
    assert "extra" in error["message"].lower()

    typo = {**HELLO, "nodes": {**HELLO["nodes"], "bye": {"type": "exit", "nxet": "hello"}}}
    error = error_of(create(api, "hello", typo), 422)
    assert error["details"][0]["path"] == "definition.nodes.bye.nxet"

    ok(create(api, "hello", HELLO), 201)
    publish = post(api, "/hello/publish", {"migrate": True})
    assert error_of(publish, 422)["message"].startswith("body.migrate:")


@pytest.mark.parametrize(
    "path",
    ["/api/journeys", "/api/journeys/validate", "/api/journeys/hello/runs"],
)
def test_malformed_json_is_a_422_never_a_500(api: Api, path: str) -> None:
    response = api.client.post(
        path,
        content=b'{"key": "hello", "definition": ',
        headers={**api.write, "Content-Type": "application/json"},
    )
    assert error_of(response, 422)["code"] == "validation_failed"


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"trigger": "api"},
        {"trigger": {"type": "api"}, "start": "a", "nodes": {"a": "send"}},
        {"trigger": {"type": "api"}, "start": "a", "nodes": {"a": {"type": ["send"]}}},
    ],
)
def test_validating_nonsense_answers_problems_never_a_500(api: Api, body: object) -> None:
    response = api.client.post("/api/journeys/validate", json=body, headers=api.read)
    assert response.status_code in (200, 422), response.text
    if response.status_code == 200:
        assert response.json()["valid"] is False and response.json()["problems"]


def test_a_key_that_is_not_a_key_is_refused(api: Api) -> None:
    error = error_of(create(api, "Hello World", HELLO), 422)
    assert error["message"].startswith("body.key:")


# --- validation and publishing ---


def test_validate_checks_an_unsaved_definition_and_its_templates(
    api: Api, template: TemplateFactory
) -> None:
    response = api.client.post("/api/journeys/validate", json=HELLO, headers=api.read)
    assert ok(response) == {
        "valid": False,
        "problems": [{"path": "nodes.hello.template", "message": "no template 'hello'"}],
    }
    template("hello", "sms")
    problems = ok(api.client.post("/api/journeys/validate", json=HELLO, headers=api.read))
    assert [p["path"] for p in problems["problems"]] == ["nodes.hello.channel"]
    template("hello", "email")
    response = api.client.post("/api/journeys/validate", json=HELLO, headers=api.read)
    assert ok(response) == {"valid": True, "problems": []}
    broken = ok(
        api.client.post(
            "/api/journeys/validate", json=changed(HELLO, "hello", next="x"), headers=api.read
        )
    )
    assert broken["problems"] == [{"path": "nodes.hello.next", "message": "no node 'x'"}]
    assert get(api, "/api/journeys") == {"items": [], "next_cursor": None}  # nothing saved


def test_publish_refuses_a_draft_whose_template_is_missing(
    api: Api, template: TemplateFactory
) -> None:
    ok(create(api, "hello", HELLO), 201)
    report = ok(post(api, "/hello/validate"))
    assert report["valid"] is False
    assert report["problems"][0]["path"] == "nodes.hello.template"

    error = error_of(post(api, "/hello/publish"), 422)
    assert error["code"] == "invalid_journey"
    assert error["details"] == [
        {"path": "draft.nodes.hello.template", "message": "no template 'hello'"}
    ]
    assert get(api, "/api/journeys/hello")["status"] == "draft"

    template("hello", "email")
    assert ok(post(api, "/hello/validate")) == {"valid": True, "problems": []}
    published = ok(post(api, "/hello/publish"))
    assert published["status"] == "live" and published["live_version"] == 1
    assert published["draft_changed"] is False


def test_publish_pause_resume_archive_and_the_wrong_transitions(
    api: Api, template: TemplateFactory
) -> None:
    template("hello", "email")
    ok(create(api, "hello", HELLO), 201)
    assert error_of(post(api, "/hello/pause"), 409)["code"] == "conflict"
    assert error_of(post(api, "/hello/resume"), 409)["code"] == "conflict"

    assert ok(post(api, "/hello/publish"))["live_version"] == 1
    assert error_of(post(api, "/hello/resume"), 409)["message"] == (
        "journey 'hello' is live, not paused"
    )
    assert ok(post(api, "/hello/pause"))["status"] == "paused"
    assert error_of(post(api, "/hello/pause"), 409)
    assert ok(post(api, "/hello/resume"))["status"] == "live"

    edited = api.client.patch(
        "/api/journeys/hello",
        json={"definition": changed(HELLO, "pause", duration="2d")},
        headers=api.write,
    )
    assert ok(edited)["draft_changed"] is True and ok(edited)["live_version"] == 1
    republished = ok(post(api, "/hello/publish", {"migrate_runs": True}))
    assert republished["live_version"] == 2 and republished["draft_changed"] is False

    assert ok(post(api, "/hello/archive"))["status"] == "archived"
    assert error_of(post(api, "/hello/publish"), 409)["message"] == "journey 'hello' is archived"
    assert error_of(post(api, "/hello/resume"), 409)
    renamed = api.client.patch("/api/journeys/hello", json={"name": "x"}, headers=api.write)
    assert error_of(renamed, 409)
    assert error_of(post(api, "/nope/publish"), 404)["message"] == "journey 'nope' not found"


# --- runs ---


def test_a_run_started_by_api_is_inspected_after_the_worker_moved_it(
    api: Api,
    frozen_clock: clock.FrozenClock,
    customer: CustomerFactory,
    template: TemplateFactory,
) -> None:
    template("hello", "email")
    alice = customer("alice", email="alice@example.com", first_name="Alice")
    ok(create(api, "hello", HELLO), 201)
    refused = post(api, "/hello/runs", {"customer_id": alice})
    assert "publish it first" in error_of(refused, 409)["message"]
    ok(post(api, "/hello/publish"))

    run = ok(post(api, "/hello/runs", {"customer_id": alice, "properties": {"plan": "pro"}}), 201)
    assert run["journey_key"] == "hello" and run["customer_id"] == alice
    assert run["state"] == "active" and run["node_id"] == "hello"
    assert run["trigger"]["event"] == "api" and run["trigger"]["properties"] == {"plan": "pro"}
    again = post(api, "/hello/runs", {"customer_id": alice})
    assert "entry rules" in error_of(again, 409)["message"]

    run_worker()
    inspected = get(api, f"/api/journeys/runs/{run['id']}")
    assert inspected["state"] == "waiting" and inspected["node_id"] == "pause"
    (sent,) = inspected["steps"]
    assert (sent["node_id"], sent["node_type"], sent["outcome"], sent["next_node"]) == (
        "hello",
        "send",
        "next",
        "pause",
    )
    assert sent["delivery_id"]
    delivery = get(api, f"/api/deliveries/{sent['delivery_id']}")
    assert delivery["address"] == "alice@example.com"

    frozen_clock.advance(timedelta(days=1, seconds=1))
    run_worker()
    inspected = get(api, f"/api/journeys/runs/{run['id']}")
    assert inspected["state"] == "completed" and inspected["ended_at"] is not None
    assert [(s["node_id"], s["node_type"]) for s in inspected["steps"]] == [
        ("hello", "send"),
        ("pause", "delay"),
        ("bye", "exit"),
    ]
    runs = get(api, f"/api/customers/{alice}/journeys")["items"]
    assert [(r["id"], r["state"]) for r in runs] == [(run["id"], "completed")]


def test_runs_of_unknown_customers_journeys_and_runs_are_404(
    api: Api, journey: JourneyFactory, template: TemplateFactory
) -> None:
    template("hello", "email")
    journey("hello", HELLO)
    started = post(api, "/hello/runs", {"customer_id": "nobody"})
    assert error_of(started, 404)["message"] == "customer 'nobody' not found"
    assert error_of(post(api, "/nope/runs", {"customer_id": "nobody"}), 404)
    assert error_of(api.client.get("/api/journeys/runs/nope", headers=api.read), 404)
    assert error_of(api.client.get("/api/customers/nobody/journeys", headers=api.read), 404)


def test_each_started_run_is_the_one_answered_when_a_customer_starts_several_journeys(
    api: Api, journey: JourneyFactory, template: TemplateFactory, customer: CustomerFactory
) -> None:
    template("hello", "email")
    alice = customer("alice", email="alice@example.com")
    keys = [f"hello-{n}" for n in range(4)]
    for key in keys:
        journey(key, HELLO)
    answered = [ok(post(api, f"/{key}/runs", {"customer_id": alice}), 201) for key in keys]
    assert [run["journey_key"] for run in answered] == keys
    assert len({run["id"] for run in answered}) == len(keys)


def test_stats_count_runs_per_node_and_per_arm_with_the_uplift(
    api: Api,
    journey: JourneyFactory,
    template: TemplateFactory,
    customer: CustomerFactory,
    track: Track,
) -> None:
    template("hello", "email")
    journey("offer", HOLDOUT)
    people = [customer(f"c{n}", email=f"c{n}@example.com") for n in range(40)]
    runs = [ok(post(api, "/offer/runs", {"customer_id": c}), 201) for c in people]
    run_worker()
    for n in range(0, 40, 3):
        track(f"c{n}", "Order Completed", {"revenue": 10})

    stats = get(api, "/api/journeys/offer/stats")
    assert (stats["key"], stats["version"], stats["runs"]) == ("offer", 1, len(runs))
    nodes = {n["node_id"]: n for n in stats["nodes"]}  # PostgreSQL's JSONB orders node ids
    assert {node_id: n["type"] for node_id, n in nodes.items()} == {
        "holdout": "holdout",
        "offer": "send",
    }
    holdout, offer = nodes["holdout"], nodes["offer"]
    assert holdout["entered"] == 40 and holdout["waiting"] == 0
    assert set(holdout["outcomes"]) == {"control", "treatment"}
    assert sum(holdout["outcomes"].values()) == 40
    assert offer["entered"] == holdout["outcomes"]["treatment"] == offer["messages"]

    arms = {arm["variant"]: arm for arm in stats["arms"]}
    assert set(arms) == {"control", "treatment"}
    control, treatment = arms["control"], arms["treatment"]
    assert control["runs"] == holdout["outcomes"]["control"]
    assert control["runs"] + treatment["runs"] == 40
    assert control["conversions"] + treatment["conversions"] == stats["conversions"] == 14
    assert stats["revenue"] == 140.0
    assert control["uplift"] is None and control["uplift_low"] is None
    rate_t = treatment["conversions"] / treatment["runs"]
    rate_c = control["conversions"] / control["runs"]
    assert treatment["conversion_rate"] == pytest.approx(rate_t)
    assert treatment["uplift"] == pytest.approx(rate_t - rate_c)
    half_width = 1.96 * math.sqrt(
        rate_t * (1 - rate_t) / treatment["runs"] + rate_c * (1 - rate_c) / control["runs"]
    )
    assert treatment["uplift_low"] == pytest.approx(rate_t - rate_c - half_width, abs=1e-3)
    assert treatment["uplift_high"] == pytest.approx(rate_t - rate_c + half_width, abs=1e-3)


# --- blueprints ---


def test_blueprints_are_listed_with_the_events_they_read(api: Api) -> None:
    listed = ok(api.client.get("/api/journeys/blueprints", headers=api.read))
    assert isinstance(listed, list)
    assert [b["key"] for b in listed] == blueprints.names()
    welcome = next(b for b in listed if b["key"] == "welcome")
    assert welcome["name"] and welcome["description"]
    assert "Signed Up" in [e["name"] for e in welcome["events"]]
    assert all(
        {"name", "description", "properties", "example"} <= set(e) for e in welcome["events"]
    )


def test_installing_a_blueprint_publishes_it_with_its_templates(api: Api) -> None:
    installed = ok(post(api, "/blueprints/welcome"), 201)
    assert installed["key"] == "welcome"
    assert installed["status"] == "live" and installed["live_version"] == 1
    expected = blueprints.load("welcome")
    assert installed["draft"] == expected.definition
    for needed in expected.templates:
        get(api, f"/api/templates/{needed.key}/{needed.channel.value}")
    assert error_of(post(api, "/blueprints/welcome"), 409)["code"] == "conflict"
    assert error_of(post(api, "/blueprints/no-such-thing"), 404)["code"] == "not_found"


def test_a_blueprint_installed_with_publish_false_stays_a_draft(api: Api) -> None:
    response = api.client.post(
        "/api/journeys/blueprints/welcome", params={"publish": "false"}, headers=api.write
    )
    installed = ok(response, 201)
    assert installed["status"] == "draft" and installed["live_version"] is None
    assert ok(post(api, "/welcome/validate"))["valid"] is True
    assert ok(post(api, "/welcome/publish"))["status"] == "live"


# --- scopes ---


def test_reads_need_read_and_changes_need_write(api: Api, template: TemplateFactory) -> None:
    template("hello", "email")
    assert error_of(api.client.get("/api/journeys"), 401)["code"] == "unauthorized"
    body = {"key": "hello", "name": "Hello", "definition": HELLO}
    refused = api.client.post("/api/journeys", json=body, headers=api.read)
    assert error_of(refused, 403)["details"] == {"needed_scope": "write", "key_scope": "read"}
    ok(create(api, "hello", HELLO), 201)
    for action in ("publish", "pause", "resume", "archive"):
        response = api.client.post(f"/api/journeys/hello/{action}", headers=api.read)
        assert error_of(response, 403)["code"] == "forbidden", action
    installed = api.client.post("/api/journeys/blueprints/welcome", headers=api.read)
    assert error_of(installed, 403)
    assert ok(api.client.get("/api/journeys/hello/stats", headers=api.read))["runs"] == 0
    assert ok(api.client.post("/api/journeys/hello/validate", headers=api.read))["valid"]
    assert get(api, "/api/journeys/hello")["status"] == "draft"
