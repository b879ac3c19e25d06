"""Every storage test runs on SQLite and, when REGULARS_TEST_DATABASE_URL is set, on PostgreSQL.

Each backend is migrated once per test process; each test starts from empty tables.
"""

from __future__ import annotations

import gc
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from regulars.config import reset_settings
from regulars.db import Database, set_database
from regulars.kit import clock
from regulars.migrate import upgrade
from regulars.models import Base

PG_URL = os.environ.get("REGULARS_TEST_DATABASE_URL")
BACKENDS = ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


def _worker_suffix() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def _admin(sql: str) -> None:
    assert PG_URL is not None
    base = make_url(PG_URL).set(drivername="postgresql", database="postgres")
    with psycopg.connect(base.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this test process's own on the server named by REGULARS_TEST_DATABASE_URL
    (named after it, the xdist worker and the process id, so parallel runs never collide)."""
    assert PG_URL is not None
    base = make_url(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"{base.database}_{_worker_suffix()}_{os.getpid()}"
    _admin(f'CREATE DATABASE "{name}"')
    url = base.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    set_database(None)
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _empty_postgres(database: Database) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with database.writer.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "regulars.db"
        shutil.copyfile(template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """The database every service, API and CLI call in the test uses, emptied beforehand."""
    monkeypatch.setenv("REGULARS_DATABASE_URL", database_url)
    reset_settings()
    db = Database(database_url)
    if not db.is_sqlite:
        _empty_postgres(db)
    set_database(db)
    yield db
    set_database(None)
    reset_settings()


@pytest.fixture(autouse=True)
def _system_clock() -> Iterator[None]:
    yield
    clock.reset_clock()


@pytest.fixture(autouse=True)
def _collector_as_it_was() -> Iterator[None]:
    """Commands that settle the heap (kit/runtime.py) run inside this process in tests: undo
    it, so objects of one test are never kept frozen for the rest of the run."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
