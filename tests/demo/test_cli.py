"""`regulars demo` prints a summary and, last, an admin API key that works."""

from __future__ import annotations

import pytest

from regulars.db import Database, session_scope
from regulars.identity import service as identity
from tests.cli import run_cli


def test_demo_prints_summary_and_a_working_key_last(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["demo", "--seed", "5", "--customers", "20", "--months", "1", "--simulate-days", "1"]
    code = run_cli(args, monkeypatch)

    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert any(line.split() == ["customers", "20"] for line in out)
    with session_scope() as session:
        api_key = identity.authenticate(session, out[-1])
    assert api_key is not None
    assert api_key.scope == "admin"


def test_demo_refuses_a_loaded_database_unless_forced(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["demo", "--seed", "5", "--customers", "5", "--months", "1", "--simulate-days", "0"]
    assert run_cli(args, monkeypatch) == 0
    capsys.readouterr()

    assert run_cli(args, monkeypatch) == 1
    assert "--force" in capsys.readouterr().err
    assert run_cli([*args, "--force"], monkeypatch) == 0


def test_demo_if_empty_loads_once_then_leaves_the_database_alone(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["demo", "--seed", "5", "--customers", "5", "--months", "1", "--simulate-days", "0"]
    args.append("--if-empty")
    assert run_cli(args, monkeypatch) == 0
    first = capsys.readouterr()
    assert "Admin API key" in first.out

    assert run_cli(args, monkeypatch) == 0
    second = capsys.readouterr()
    assert "Admin API key" not in second.out
    assert "not loaded again" in second.err
    with session_scope(readonly=True) as session:
        assert len(identity.list_api_keys(session)) == 1
