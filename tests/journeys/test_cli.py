"""`regulars journeys ...` through the real entry point, on both databases: listing and
showing, the status commands, validate and import of files, the export/import round trip,
statistics, a customer's runs, the run inspector and blueprints."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from regulars.db import Database, session_scope
from regulars.journeys import blueprints
from regulars.journeys import service as journeys
from regulars.journeys.schemas import RunCreate
from regulars.kit import clock
from tests.cli import run_cli
from tests.journeys.conftest import JourneyFactory, Track, run_worker
from tests.messages.conftest import CustomerFactory, TemplateFactory

pytestmark = pytest.mark.usefixtures("frozen_clock")

HELLO: dict[str, Any] = {
    "trigger": {"type": "api"},
    "start": "hello",
    "nodes": {
        "hello": {"type": "send", "template": "hello", "channel": "email", "next": "pause"},
        "pause": {"type": "delay", "duration": "1d", "next": "bye"},
        "bye": {"type": "exit"},
    },
}
# Most of what a definition can hold: times of day, a where, a split, a holdout, a goal.
RICH: dict[str, Any] = {
    "trigger": {"type": "event", "event": "Checkout Started", "where": {"currency": "EUR"}},
    "entry": {"reentry": "interval", "min_interval": "30d", "key": "checkout_id"},
    "exit": [{"type": "event", "event": "Order Completed", "match": ["checkout_id"]}],
    "goal": {"event": "Order Completed", "within": "3d", "value": "revenue"},
    "start": "holdout",
    "nodes": {
        "holdout": {"type": "holdout", "percent": 10, "next": "daytime"},
        "daytime": {"type": "delay", "between": ["10:00", "18:00"], "next": "wait"},
        "wait": {
            "type": "wait",
            "event": "Order Completed",
            "match": ["checkout_id"],
            "timeout": "1h",
            "timeout_next": "split",
        },
        "split": {
            "type": "split",
            "paths": [
                {"name": "plain", "percent": 50, "next": "remind"},
                {"name": "offer", "percent": 50, "next": "traits"},
            ],
        },
        "traits": {"type": "update_traits", "traits": {"offer": "{{ trigger.checkout_id }}"}},
        "remind": {"type": "send", "template": "hello", "channel": "auto"},
    },
}
# Half the runs held out, the rest get an email; an order within a week is the goal.
HOLDOUT: dict[str, Any] = {
    "trigger": {"type": "event", "event": "Signed Up"},
    "goal": {"event": "Order Completed", "within": "7d"},
    "start": "holdout",
    "nodes": {
        "holdout": {"type": "holdout", "percent": 50, "next": "offer"},
        "offer": {"type": "send", "template": "hello", "channel": "email"},
    },
}


class Cli:
    """`regulars ARGS` in process: its exit code, stdout and stderr (words joined by one
    space: the error console folds long lines)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
        self.monkeypatch, self.capsys = monkeypatch, capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = run_cli(["journeys", *args], self.monkeypatch)
        captured = self.capsys.readouterr()
        return code, captured.out, " ".join(captured.err.split())

    def ok(self, *args: str) -> str:
        code, out, err = self(*args)
        assert code == 0, err
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))


@pytest.fixture
def cli(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    return Cli(monkeypatch, capsys)


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_list_show_and_the_status_commands(
    cli: Cli, journey: JourneyFactory, template: TemplateFactory
) -> None:
    template("hello", "email")
    journey("hello", HELLO, publish=False)
    listed = cli.ok("list")
    assert "hello" in listed and "draft" in listed
    shown = cli.ok("show", "hello")
    assert "not published yet" in shown
    assert '{"type":"api"}' in shown
    nodes = [
        line.split()
        for line in shown.splitlines()
        if line.split()[:1] in (["hello"], ["pause"], ["bye"])
    ]
    assert nodes == [  # from the start along the edges, on both databases
        ["hello", "send", "next", "->", "pause"],
        ["pause", "delay", "next", "->", "bye"],
        ["bye", "exit", "(end)"],
    ]

    assert cli.ok("publish", "hello").strip() == "journey hello published: version 1"
    assert [(j["key"], j["status"], j["live_version"]) for j in cli.json("list")] == [
        ("hello", "live", 1)
    ]
    assert "same as live" in cli.ok("show", "hello")
    assert cli.ok("pause", "hello").strip() == "journey hello paused"
    code, _, err = cli("pause", "hello")
    assert (code, err) == (1, "error: journey 'hello' is paused, not live")
    assert cli.ok("resume", "hello").strip() == "journey hello resumed"
    assert cli.ok("publish", "hello", "--migrate-runs").strip() == (
        "journey hello published: version 2 (runs in flight moved to it)"
    )
    assert cli.ok("archive", "hello").strip() == "journey hello archived"
    assert cli.json("show", "hello")["status"] == "archived"
    code, _, err = cli("show", "nope")
    assert (code, err) == (1, "error: journey 'nope' not found")


def test_export_then_import_gives_the_same_definition(
    cli: Cli, journey: JourneyFactory, tmp_path: Path
) -> None:
    original = journey("cart", RICH, publish=False)
    exported = cli.ok("export", "cart")
    target = tmp_path / "cart.yaml"
    assert cli("export", "cart", "-o", str(target))[0] == 0
    assert target.read_text() == exported
    document = yaml.safe_load(exported)
    assert (document["key"], document["name"]) == ("cart", original.name)

    write(target, {**document, "key": "cart-copy", "name": "Cart copy"})
    assert cli.ok("import", str(target)).strip() == "journey cart-copy created as a draft"
    copy = cli.json("show", "cart-copy")
    assert copy["draft"] == RICH == cli.json("show", "cart")["draft"]
    assert copy["name"] == "Cart copy" and copy["status"] == "draft"

    changed = {**document, "description": "Edited", "definition": HELLO}
    write(target, changed)
    assert cli.ok("import", str(target)).strip() == "journey cart draft replaced"
    replaced = cli.json("show", "cart")
    assert replaced["draft"] == HELLO and replaced["description"] == "Edited"
    assert replaced["id"] == original.id


def test_import_reads_json_and_refuses_a_file_without_a_name(
    cli: Cli, template: TemplateFactory, tmp_path: Path
) -> None:
    template("hello", "email")
    as_json = tmp_path / "hello.json"
    as_json.write_text(
        json.dumps({"key": "hello", "name": "Hello", "definition": HELLO}, indent="\t")
    )
    assert cli.ok("import", str(as_json), "--publish").strip() == (
        "journey hello published: version 1"
    )
    assert cli.json("show", "hello")["draft"] == HELLO

    nameless = write(tmp_path / "nameless.yaml", {"key": "other", "definition": HELLO})
    code, _, err = cli("import", str(nameless))
    assert (code, err) == (2, f"error: {nameless}: name: Field required")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("key: [unclosed\n")
    code, _, err = cli("import", str(bad_yaml))
    assert code == 2 and err.startswith(f"error: {bad_yaml} is not YAML:")
    assert [j["key"] for j in cli.json("list")] == ["hello"]


def test_an_import_that_cannot_be_published_saves_nothing(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path / "hello.yaml", {"key": "hello", "name": "Hello", "definition": HELLO})
    code, _, err = cli("import", str(path), "--publish")
    assert (code, err) == (2, "error: draft.nodes.hello.template: no template 'hello'")
    assert cli.json("list") == []


def test_validate_a_file_or_a_key_exits_1_with_the_problems(
    cli: Cli, template: TemplateFactory, journey: JourneyFactory, tmp_path: Path
) -> None:
    document = {"key": "hello", "name": "Hello", "definition": HELLO}
    path = write(tmp_path / "hello.yaml", document)
    code, out, _ = cli("validate", str(path))
    assert code == 1
    assert out.splitlines() == [
        f"{path}: 1 problem(s)",
        "  nodes.hello.template: no template 'hello'",
    ]
    template("hello", "email")
    assert cli.ok("validate", str(path)).strip() == f"{path}: valid"

    broken = {**HELLO, "nodes": {**HELLO["nodes"], "bye": {"type": "exit", "next": "x"}}}
    write(path, {**document, "definition": broken})
    code, out, _ = cli("validate", str(path))
    assert code == 1 and "  nodes.bye.next: Extra inputs are not permitted" in out
    definition_only = write(tmp_path / "definition.yaml", {**HELLO, "start": "nowhere"})
    code, out, _ = cli("validate", str(definition_only), "--json")
    assert code == 1
    assert json.loads(out) == {
        "valid": False,
        "problems": [{"path": "start", "message": "no node 'nowhere'"}],
    }

    code, _, err = cli("validate", str(tmp_path / "missing.yaml"))
    assert code == 2 and err.startswith("error: cannot read")
    journey("hello", HELLO, publish=False)
    assert cli.ok("validate", "hello").strip() == "hello: valid"
    code, _, err = cli("validate", "nope")
    assert (code, err) == (1, "error: journey 'nope' not found")


def test_stats_print_nodes_and_arms_with_the_uplift(
    cli: Cli,
    journey: JourneyFactory,
    template: TemplateFactory,
    customer: CustomerFactory,
    track: Track,
) -> None:
    template("hello", "email")
    journey("signup", HOLDOUT)
    for n in range(30):
        customer(f"c{n}", email=f"c{n}@example.com")
        track(f"c{n}", "Signed Up")
    run_worker()
    for n in range(0, 30, 2):
        track(f"c{n}", "Order Completed")

    found = cli.json("stats", "signup")
    assert found["runs"] == 30 and found["conversions"] == 15
    arms = {arm["variant"]: arm for arm in found["arms"]}
    assert set(arms) == {"control", "treatment"}
    treatment = arms["treatment"]

    out = cli.ok("stats", "signup")
    assert out.splitlines()[0].startswith("signup: version 1, 30 runs (0 in flight, ")
    assert "15 conversions" in out.splitlines()[0]
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert rows["holdout"].split()[:3] == ["holdout", "holdout", "30"]
    assert rows["control"].split()[-2:] == ["-", "-"]  # no uplift against itself
    treatment_row = rows["treatment"]
    uplift = f"{treatment['uplift'] * 100:+.1f} pts"
    interval = f"{treatment['uplift_low'] * 100:+.1f} to {treatment['uplift_high'] * 100:+.1f} pts"
    assert uplift in treatment_row and interval in treatment_row
    assert f"{treatment['conversion_rate']:.1%}" in treatment_row


def test_runs_of_a_customer_and_the_path_one_took(
    cli: Cli,
    frozen_clock: clock.FrozenClock,
    journey: JourneyFactory,
    template: TemplateFactory,
    customer: CustomerFactory,
) -> None:
    template("hello", "email")
    journey("hello", HELLO)
    alice = customer("alice", email="alice@example.com")
    with session_scope() as session:
        run = journeys.start_run(session, "hello", RunCreate(customer_id=alice))
    run_worker()

    listed = cli.ok("runs", alice)
    assert run.id in listed and "hello" in listed and "waiting" in listed
    assert [r["id"] for r in cli.json("runs", alice)["items"]] == [run.id]

    shown = cli.ok("inspect", run.id)
    rows = {line.split()[0]: line.split() for line in shown.splitlines()}
    assert rows["now"] == ["now", "at", "pause", "until", "2026-03-03T10:00:00+00:00"]
    step = " ".join(rows["1"])
    assert step.split()[2:6] == ["hello", "send", "next", "pause"]
    detail = cli.json("inspect", run.id)
    assert step.split()[6] == detail["steps"][0]["delivery_id"]

    frozen_clock.advance(timedelta(days=1))
    run_worker()
    shown = cli.ok("inspect", run.id)
    assert "ended" in shown and "(completed)" in shown
    assert [s["node_id"] for s in cli.json("inspect", run.id)["steps"]] == [
        "hello",
        "pause",
        "bye",
    ]
    code, _, err = cli("inspect", "nope")
    assert (code, err) == (1, "error: no journey run 'nope'")
    code, _, err = cli("runs", "nobody")
    assert (code, err) == (1, "error: customer 'nobody' not found")


def test_blueprints_are_listed_and_installed(cli: Cli) -> None:
    listed = cli.ok("blueprints")
    for key in blueprints.names():
        assert key in listed
    assert "Signed Up" in listed
    assert [b["key"] for b in cli.json("blueprints")] == blueprints.names()

    assert cli.ok("install", "welcome").strip() == (
        "journey welcome installed and published: version 1"
    )
    code, _, err = cli("install", "welcome")
    assert code == 1 and err.startswith("error: journey 'welcome' exists")
    assert cli.ok("install", "order-updates", "--draft").strip() == (
        "journey order-updates installed as a draft"
    )
    statuses = {j["key"]: j["status"] for j in cli.json("list")}
    assert statuses == {"order-updates": "draft", "welcome": "live"}
    code, _, err = cli("install", "no-such-thing")
    assert code == 1 and err.startswith("error: no blueprint 'no-such-thing'")


def test_webhook_secret_is_the_one_calls_are_signed_with(cli: Cli) -> None:
    assert cli.ok("webhook-secret").strip() == journeys.webhook_secret()
