"""`regulars segments ...` through the real entry point, on both databases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regulars.db import Database
from tests.cli import run_cli
from tests.customers.helpers import ingest, owner_of

RULE = {
    "type": "and",
    "rules": [
        {"type": "profile", "field": "traits.city", "op": "equals", "value": "Berlin"},
        {"type": "event", "name": "Order Completed"},
    ],
}


def people() -> tuple[str, str]:
    messages = []
    for user, city in (("ada", "Berlin"), ("bob", "Berlin")):
        messages.append(
            {
                "type": "identify",
                "userId": user,
                "traits": {"city": city, "email": f"{user}@example.com"},
                "messageId": f"i-{user}",
                "timestamp": "2026-03-01T12:00:00Z",
            }
        )
    messages.append(
        {
            "type": "track",
            "userId": "ada",
            "event": "Order Completed",
            "messageId": "o1",
            "timestamp": "2026-03-02T12:00:00Z",
        }
    )
    assert ingest(messages).rejected == []
    ada, bob = owner_of("ada"), owner_of("bob")
    assert ada and bob
    return ada, bob


@pytest.fixture
def rule_file(tmp_path: Path) -> Path:
    path = tmp_path / "rule.json"
    path.write_text(json.dumps(RULE))
    return path


def test_create_list_show_members_and_explain(
    database: Database,
    rule_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ada, bob = people()
    code = run_cli(
        [
            "segments",
            "create",
            "berlin-buyers",
            "--name",
            "Berlin buyers",
            "--rule",
            str(rule_file),
        ],
        monkeypatch,
    )
    assert code == 0
    assert "segment berlin-buyers created: 1 members" in capsys.readouterr().out

    assert run_cli(["segments", "list"], monkeypatch) == 0
    listed = capsys.readouterr().out
    assert "berlin-buyers" in listed and "Berlin buyers" in listed

    assert run_cli(["segments", "members", "berlin-buyers", "--csv"], monkeypatch) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "customer_id,external_id,email,entered_at"
    assert [line.split(",")[:3] for line in lines[1:]] == [[ada, "ada", "ada@example.com"]]

    assert run_cli(["segments", "explain", "berlin-buyers", bob], monkeypatch) == 0
    explained = capsys.readouterr().out
    assert f"customer {bob} is out of berlin-buyers" in explained
    assert "'Order Completed' count ever >= 1 (found: 0)" in explained


def test_preview_and_compute(
    database: Database,
    rule_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    people()
    assert run_cli(["segments", "preview", "--rule", str(rule_file)], monkeypatch) == 0
    assert capsys.readouterr().out.startswith("1 customers")
    run_cli(["segments", "create", "bb", "--name", "BB", "--rule", str(rule_file)], monkeypatch)
    capsys.readouterr()
    assert run_cli(["segments", "compute", "bb"], monkeypatch) == 0
    assert "bb: 1 members (0 entered, 0 exited)" in capsys.readouterr().out


def test_bad_rule_files_and_unknown_segments_exit_2_or_1_with_one_line(
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert run_cli(["segments", "preview", "--rule", str(broken)], monkeypatch) == 2
    assert "is not JSON" in capsys.readouterr().err

    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"type": "fact", "field": "orders_count", "op": "gt"}))
    assert run_cli(["segments", "preview", "--rule", str(wrong)], monkeypatch) == 2
    assert "rule: gt needs a number" in capsys.readouterr().err

    assert run_cli(["segments", "show", "nope"], monkeypatch) == 1
    assert "no segment with key or id 'nope'" in capsys.readouterr().err
