"""Handlers for the worker tests. Worker subprocesses load them with `--include jobs.worker_tasks`.

`tests.record` inserts one row into `test_job_effects`, a table the tests create themselves, so
a test can count how many times each job's effect happened.
"""

from __future__ import annotations

import os
import threading
from typing import TypedDict

from sqlalchemy import Column, Integer, MetaData, String, Table, insert
from sqlalchemy.orm import Session

from regulars.jobs.service import task

effects_metadata = MetaData()
effects = Table(
    "test_job_effects",
    effects_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("n", Integer, nullable=False),
    Column("worker", String(100), nullable=False),
)


class RecordPayload(TypedDict):
    n: int


@task("tests.record")
def record(session: Session, payload: RecordPayload) -> None:
    if os.environ.get("REGULARS_TEST_BLOCK_JOBS") == "1":
        threading.Event().wait()  # hang inside the job's transaction until the process is killed
    worker = os.environ.get("REGULARS_TEST_WORKER_NAME", "in-process")
    session.execute(insert(effects).values(n=payload["n"], worker=worker))
