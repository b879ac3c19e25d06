"""Real `regulars worker` processes: a killed worker's job is taken over after its lease, SIGTERM
stops cleanly, and on PostgreSQL two workers share 500 jobs, each run exactly once.

Waiting here is polling the database or a process's output, with a deadline; never a timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from regulars.db import Database
from regulars.jobs import service
from regulars.jobs.models import Job, JobStatus

from .conftest import recorded

ROOT = Path(__file__).resolve().parents[2]
WORKER_MAIN = Path(__file__).with_name("worker_main.py")
DEADLINE_SECONDS = 90.0


class WorkerProcess:
    def __init__(self, url: str, log: Path, *, name: str, env: dict[str, str]) -> None:
        self.log = log
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
            "PYTHONUNBUFFERED": "1",
            "REGULARS_DATABASE_URL": url,
            "REGULARS_WORKER_POLL_SECONDS": "0.05",
            "REGULARS_TEST_WORKER_NAME": name,
            **env,
        }
        command = [sys.executable, str(WORKER_MAIN), "--include", "tests.jobs.worker_tasks"]
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [*command, "--batch-size", "10"], env=environment, stdout=out, stderr=out
            )

    @property
    def output(self) -> str:
        return self.log.read_text()

    def owns(self, job: Job) -> bool:
        return job.locked_by is not None and job.locked_by.split(":")[1] == str(self.process.pid)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=DEADLINE_SECONDS)


def wait_for(
    condition: Callable[[], bool],
    what: str | Callable[[], str],
    *processes: WorkerProcess,
) -> None:
    """Poll `condition` until the deadline; `what` (or what it answers then) says what was
    awaited, and how far it got, in the failure."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(p.output for p in processes)
            awaited = what() if callable(what) else what
            pytest.fail(f"gave up waiting for {awaited}; worker output:\n{logs}")
        time.sleep(0.05)


@pytest.fixture
def spawn(database_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def _spawn(name: str, **env: str) -> WorkerProcess:
        worker = WorkerProcess(database_url, tmp_path / f"{name}.log", name=name, env=env)
        started.append(worker)
        return worker

    yield _spawn
    for worker in started:
        worker.stop(signal.SIGKILL)


def _job(database: Database, job_id: int) -> Job:
    with database.session(readonly=True) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_a_killed_workers_job_is_run_by_another_worker_after_its_lease(
    effects_table: Database, spawn: Callable[..., WorkerProcess]
) -> None:
    database = effects_table
    with database.session() as session:
        job_id = service.enqueue(session, "tests.record", {"n": 7})
    lease = {"REGULARS_JOB_LEASE_SECONDS": "60"}
    stuck = spawn("stuck", REGULARS_TEST_BLOCK_JOBS="1", **lease)
    wait_for(lambda: stuck.owns(_job(database, job_id)), "the first worker's claim", stuck)
    assert stuck.stop(signal.SIGKILL) == -signal.SIGKILL
    assert _job(database, job_id).status == JobStatus.RUNNING

    # The rescuer lives two minutes ahead: the lease has run out for it, with no waiting.
    rescuer = spawn("rescuer", REGULARS_TEST_CLOCK_AHEAD_SECONDS="120", **lease)
    wait_for(lambda: _job(database, job_id).status == JobStatus.DONE, "the rerun", rescuer)
    job = _job(database, job_id)
    assert rescuer.owns(job)
    assert job.attempts == 2
    assert recorded(database) == [(7, "rescuer")]
    assert rescuer.stop() == 0


def test_sigterm_stops_a_worker_cleanly(
    database: Database, spawn: Callable[..., WorkerProcess]
) -> None:
    worker = spawn("w")
    wait_for(lambda: "started" in worker.output, "the worker to start", worker)
    assert worker.stop(signal.SIGTERM) == 0
    assert "SIGTERM: stopping after the current job" in worker.output
    assert "worker stopped" in worker.output


if os.environ.get("REGULARS_TEST_DATABASE_URL"):  # exists only where PostgreSQL does

    @pytest.mark.parametrize("backend", ["postgresql"])
    def test_two_workers_run_each_of_500_jobs_exactly_once(
        effects_table: Database, spawn: Callable[..., WorkerProcess]
    ) -> None:
        database = effects_table
        workers = [spawn(name) for name in ("a", "b")]
        wait_for(lambda: all("started" in w.output for w in workers), "workers up", *workers)
        with database.session() as session:
            for n in range(500):
                service.enqueue(session, "tests.record", {"n": n})

        def by_status() -> dict[str, int]:
            """The test's jobs only: the workers' recurring jobs (the segment sweep...) are
            done too, at moments of their own."""
            with database.session(readonly=True) as session:
                query = (
                    select(Job.status, func.count())
                    .where(Job.kind == "tests.record")
                    .group_by(Job.status)
                )
                return {str(status): count for status, count in session.execute(query)}

        def all_done() -> bool:
            return by_status().get(JobStatus.DONE, 0) == 500

        wait_for(all_done, lambda: f"500 jobs done (jobs by status: {by_status()})", *workers)
        assert [worker.stop() for worker in workers] == [0, 0]
        effects = recorded(database)
        assert sorted(n for n, _ in effects) == list(range(500))
        with database.session(readonly=True) as session:
            errors = session.scalar(select(func.count()).where(Job.last_error.is_not(None)))
        assert errors == 0
