"""`regulars db upgrade`, `regulars serve` and `regulars worker` as Typer commands."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import typer
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from regulars import migrate
from regulars.app import create_server_app
from regulars.config import reset_settings
from regulars.errors import ValidationFailed
from regulars.kit import runtime
from regulars.server_cli import db_app, serve, worker

runner = CliRunner()


def _app_of(*commands: typer.models.CommandFunctionType) -> typer.Typer:
    app = typer.Typer()
    for command in commands:
        app.command()(command)
    return app


@pytest.fixture
def sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    monkeypatch.setenv("REGULARS_DATABASE_URL", url)
    reset_settings()
    yield url
    reset_settings()


def test_db_upgrade_creates_the_schema(sqlite_url: str) -> None:
    result = runner.invoke(db_app, ["upgrade"])
    assert result.exit_code == 0, result.output
    assert f"is at {migrate.heads(sqlite_url)[0]}" in result.output
    engine = create_engine(sqlite_url)
    assert "jobs" in inspect(engine).get_table_names()
    engine.dispose()


def test_worker_refuses_threads_on_sqlite(sqlite_url: str) -> None:
    result = runner.invoke(_app_of(worker, serve), ["worker", "--concurrency", "2"])
    assert isinstance(result.exception, ValidationFailed)


def test_serve_says_where_to_go_and_passes_the_worker_choice(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    calls: list[tuple[object, dict[str, object]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append((app, options)))
    result = runner.invoke(_app_of(serve, worker), ["serve", "--port", "8123", "--without-worker"])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8123/" in result.output
    assert "run `regulars worker`" in result.output
    [(factory, options)] = calls
    assert isinstance(factory, partial)
    assert factory.func is create_server_app
    assert factory.keywords == {"with_worker": False}
    assert (options["factory"], options["host"], options["port"]) == (True, "127.0.0.1", 8123)


def test_serve_with_several_processes_runs_no_embedded_worker(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    calls: list[tuple[object, dict[str, object]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append((app, options)))
    monkeypatch.setenv("REGULARS_EMBEDDED_WORKER", "true")  # restored after the test
    result = runner.invoke(_app_of(serve, worker), ["serve", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "run `regulars worker`" in result.output
    [(app, options)] = calls
    assert app == "regulars.app:create_server_app"
    assert (options["factory"], options["workers"]) == (True, 2)
    assert os.environ["REGULARS_EMBEDDED_WORKER"] == "false"


def test_serve_refuses_an_embedded_worker_in_several_processes(sqlite_url: str) -> None:
    result = runner.invoke(_app_of(serve, worker), ["serve", "--workers", "2", "--with-worker"])
    assert isinstance(result.exception, ValidationFailed)
    assert "--workers 1" in str(result.exception)


def test_worker_settles_its_heap_before_the_first_job(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import regulars.worker

    order: list[str] = []
    monkeypatch.setattr(runtime, "settle_heap", lambda: order.append("settled"))
    monkeypatch.setattr(regulars.worker, "run_pool", lambda workers, stop: order.append("ran"))
    result = runner.invoke(_app_of(worker, serve), ["worker"])
    assert result.exit_code == 0, result.output
    assert order == ["settled", "ran"]


def test_worker_folds_the_sqlite_wal_from_a_thread_of_its_own(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import regulars.worker

    def checkpointers() -> int:
        return sum(t.name == "sqlite-checkpoint" for t in threading.enumerate())

    migrate.upgrade(sqlite_url)
    before, while_running = checkpointers(), []
    monkeypatch.setattr(
        regulars.worker, "run_pool", lambda workers, stop: while_running.append(checkpointers())
    )
    result = runner.invoke(_app_of(worker, serve), ["worker"])
    assert result.exit_code == 0, result.output
    assert while_running == [before + 1]
    assert checkpointers() == before  # stopped with the worker
