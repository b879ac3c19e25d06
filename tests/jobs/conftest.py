"""Fixtures for the jobs tests: a frozen clock, the effects table, a registry of test handlers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from regulars.db import Database
from regulars.jobs.service import Registry
from regulars.kit import clock
from regulars.kit.clock import FrozenClock

from .worker_tasks import RecordPayload, effects, effects_metadata, record

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def frozen() -> Iterator[FrozenClock]:
    with clock.frozen(START) as frozen_clock:
        yield frozen_clock


@pytest.fixture
def effects_table(database: Database) -> Iterator[Database]:
    """The effects table, dropped afterwards so the schema is the product's again."""
    effects_metadata.drop_all(database.writer)
    effects_metadata.create_all(database.writer)
    yield database
    effects_metadata.drop_all(database.writer)


def recorded(database: Database) -> list[tuple[int, str]]:
    """Every effect row, as (n, worker), in insertion order."""
    with database.session(readonly=True) as session:
        rows = session.execute(select(effects.c.n, effects.c.worker).order_by(effects.c.id))
        return [(n, worker) for n, worker in rows]


class Boom(RuntimeError):
    pass


def _boom(session: Session, payload: Mapping[str, object]) -> None:
    raise Boom(f"boom {payload.get('n')}")


def _write_then_boom(session: Session, payload: RecordPayload) -> None:
    session.execute(insert(effects).values(n=payload["n"], worker="rolled back"))
    raise Boom("after writing")


@pytest.fixture
def registry(effects_table: Database) -> Registry:
    """A registry of its own, so recurring schedules declared by a test stay in that test."""
    reg = Registry()
    reg.task("tests.record")(record)
    reg.task("tests.boom")(_boom)
    reg.task("tests.write_then_boom")(_write_then_boom)
    return reg
