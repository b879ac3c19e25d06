"""Journey runs on real `regulars worker` processes: a worker killed in the middle of its work
and started again sends each message once and loses no run; on PostgreSQL, three workers
draining one queue run each step exactly once.

The journey is send -> emit an event -> send, all in one go, so a worker moves a whole run
in one batch: it claims the runs, sends, emits, writes the steps and saves the runs in one
transaction, and every effect is keyed by (run, step). Waiting is polling the database, with
a deadline; never a timing.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from regulars.customers import service as customers
from regulars.customers.models import Event
from regulars.db import Database, session_scope
from regulars.journeys import service as journeys
from regulars.journeys.models import JourneyRun, JourneyStep, RunState
from regulars.journeys.schemas import JourneyCreate
from regulars.messages import templates
from regulars.messages.models import Delivery, DeliveryStatus, MessageChannel
from regulars.messages.schemas import TemplateWrite

ROOT = Path(__file__).resolve().parents[2]
# What the `regulars` console script runs (pyproject's [project.scripts]).
REGULARS = (sys.executable, "-c", "from regulars.cli import main; main()")
DEADLINE_SECONDS = 240.0  # only a worker that is stuck gets near it

CONTENT: dict[MessageChannel, dict[str, str]] = {
    MessageChannel.EMAIL: {
        "subject": "Welcome, {{ customer.first_name }}",
        "body": (
            "<mjml><mj-body><mj-section><mj-column>"
            "<mj-text>Hi {{ customer.first_name }}, glad you are here.</mj-text>"
            "</mj-column></mj-section></mj-body></mjml>"
        ),
    },
    MessageChannel.INAPP: {
        "title": "Welcome",
        "body": "Glad you are here.",
        "link": "https://shop.example.com/",
    },
}
# The onboarding journey's nodes in order; a test publishes the first two or all three.
CHAIN = (
    ("welcome", {"type": "send", "template": "welcome"}),
    ("welcomed", {"type": "emit", "event": "Welcomed"}),
    ("tips", {"type": "send", "template": "tips"}),
)
EMIT_STEP = 2  # the step that emits Welcomed
# What the worker logs when a batch of runs, or a run, fails (journeys/tasks.py, worker.py).
TROUBLE = re.compile(r"a batch of journey runs failed|journey run \w+ failed|journeys\.runs failed")


class WorkerProcess:
    """One `regulars worker` process, its output in a log file."""

    def __init__(self, url: str, log: Path, *, env: Mapping[str, str]) -> None:
        self.log = log
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
            ),
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "400",  # one log record, one line
            "REGULARS_DATABASE_URL": url,
            "REGULARS_WORKER_POLL_SECONDS": "0.05",
            **env,
        }
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [*REGULARS, "worker"], env=environment, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def output(self) -> str:
        return "\n".join(line.rstrip() for line in self.log.read_text().splitlines())

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=DEADLINE_SECONDS)


class Spawn(Protocol):
    def __call__(self, name: str, **env: str) -> WorkerProcess: ...


@pytest.fixture
def spawn(database_url: str, tmp_path: Path) -> Iterator[Spawn]:
    started: list[WorkerProcess] = []

    def _spawn(name: str, **env: str) -> WorkerProcess:
        url = make_url(database_url)
        if url.get_backend_name() == "postgresql":  # its connections show under its name
            url = url.update_query_dict({"application_name": f"worker-{name}"})
        worker = WorkerProcess(
            url.render_as_string(hide_password=False), tmp_path / f"{name}.log", env=env
        )
        started.append(worker)
        return worker

    yield _spawn
    for worker in started:
        worker.stop(signal.SIGKILL)


def wait_for(
    condition: Callable[[], bool], what: str, *workers: WorkerProcess, every: float = 0.05
) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        exited = [w for w in workers if w.process.poll() is not None]
        if exited or time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.log.name}\n{w.output}" for w in workers)
            reason = "a worker exited" if exited else "gave up"
            pytest.fail(f"{reason} waiting for {what}; worker output:\n{logs}")
        time.sleep(every)


# --- the data: templates, the journey, customers who sign up ---


def path_of(nodes: int) -> list[tuple[int, str, str | None]]:
    """(step number, node, the node after it) of a run through the first `nodes` nodes."""
    names = [name for name, _ in CHAIN[:nodes]]
    return [(n + 1, name, ([*names, None])[n + 1]) for n, name in enumerate(names)]


def sends_of(nodes: int) -> dict[str, int]:
    """Template (named as its node) -> the step that sends it."""
    return {name: n + 1 for n, (name, node) in enumerate(CHAIN[:nodes]) if node["type"] == "send"}


def publish_onboarding(channel: MessageChannel, *, nodes: int) -> None:
    """Templates on `channel` and the onboarding journey through the first `nodes` nodes
    of CHAIN, started by each Signed Up."""
    kinds = dict(CHAIN)
    body: dict[str, Any] = {}
    for _, name, after in path_of(nodes):
        node = kinds[name] | ({"next": after} if after else {})
        body[name] = node | ({"channel": channel.value} if node["type"] == "send" else {})
    definition = {"trigger": {"type": "event", "event": "Signed Up"}, "start": "welcome"}
    with session_scope() as session:
        for template in sends_of(nodes):
            data = TemplateWrite(name=template.title(), locales={"en": CONTENT[channel]})
            templates.save(session, template, channel, data)
        create = JourneyCreate(
            key="onboarding", name="Onboarding", definition=definition | {"nodes": body}
        )
        journeys.create(session, create)
        journeys.publish(session, "onboarding")


def sign_up(count: int, *, email: bool, chunk: int = 1000) -> None:
    """`count` customers sign up (with an identify first when they need an email address),
    a chunk per ingest call as `/v1/batch` does: each Signed Up starts a run in the same
    transaction."""
    for start in range(0, count, chunk):
        batch: list[dict[str, Any]] = []
        for n in range(start, min(count, start + chunk)):
            if email:
                traits = {"email": f"c{n}@example.com", "firstName": f"C{n}"}
                batch.append({"type": "identify", "userId": f"c{n}", "traits": traits})
            batch.append({"type": "track", "userId": f"c{n}", "event": "Signed Up"})
        with session_scope() as session:
            result = customers.ingest(session, batch, source="tests")
            assert result.rejected == [], result.rejected[:3]


# --- what the database says ---


def count_runs(database: Database, *conditions: Any) -> int:
    with database.session(readonly=True) as session:
        return session.scalar(select(func.count()).select_from(JourneyRun).where(*conditions)) or 0


def open_write(database: Database) -> str | None:
    """The write transaction another connection (the worker's) has open now, or None. On
    PostgreSQL, its transaction id; on SQLite, where one writer is in at a time, "the writer"
    while the writers' lock file is held, which a write transaction keeps from its start to
    its commit (db.SQLiteWriterQueue)."""
    if database.is_sqlite:
        fd = os.open(f"{make_url(database.url).database}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return "the writer"
        finally:
            os.close(fd)  # closing lets go of the lock, if this probe took it
        return None
    writing = text(
        "SELECT min(backend_xid::text) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    with database.session(readonly=True) as session:
        found: str | None = session.scalar(writing)
        return found


def inside_a_long_write(database: Database, *, looks: int) -> Callable[[], bool]:
    """A condition for wait_for: true once one write transaction was open at `looks` looks in
    a row. The worker's other write transactions (claiming jobs, deliveries in batches of
    one) are over in a few milliseconds; a batch of journey runs lasts."""
    seen: list[str | None] = []

    def condition() -> bool:
        seen.append(open_write(database))
        last = seen[-looks:]
        return len(last) == looks and last[0] is not None and len(set(last)) == 1

    return condition


def moving_runs(database: Database) -> set[str]:
    """PostgreSQL: the application names of the connections moving runs now, holding a claim
    on journey_runs in a transaction that has written."""
    query = text(
        "SELECT DISTINCT a.application_name FROM pg_locks l "
        "JOIN pg_class c ON c.oid = l.relation JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE c.relname = 'journey_runs' AND l.mode = 'RowShareLock' AND l.granted "
        "AND a.backend_xid IS NOT NULL AND a.datname = current_database()"
    )
    with database.session(readonly=True) as session:
        return set(session.scalars(query))


def assert_each_step_ran_once(database: Database, customer_count: int, *, nodes: int) -> None:
    """Every customer has one run, completed, that took each step once and in order; each
    send step made one delivery (keyed by run and step), the emit step one event."""
    path, sends = path_of(nodes), sends_of(nodes)
    with database.session(readonly=True) as session:
        runs = {r.id: r for r in session.scalars(select(JourneyRun))}
        steps = session.execute(
            select(
                JourneyStep.run_id,
                JourneyStep.seq,
                JourneyStep.node_id,
                JourneyStep.next_node,
                JourneyStep.delivery_id,
            )
        ).all()
        deliveries = session.execute(
            select(
                Delivery.id,
                Delivery.customer_id,
                Delivery.template_key,
                Delivery.idempotency_key,
                Delivery.status,
            )
        ).all()
        welcomed = session.execute(
            select(Event.customer_id, Event.message_id).where(Event.name == "Welcomed")
        ).all()

    # No run lost, none left behind, none failed along the way.
    assert len(runs) == customer_count
    assert len({r.customer_id for r in runs.values()}) == customer_count
    assert Counter(r.state for r in runs.values()) == {RunState.COMPLETED: customer_count}
    assert [r.id for r in runs.values() if r.failures or r.steps != len(path)] == []

    # One step row per (run, step number), each run along the whole path.
    assert len(steps) == len(path) * customer_count
    assert Counter(node for _, _, node, _, _ in steps) == {
        node: customer_count for _, node, _ in path
    }
    taken: dict[str, list[tuple[int, str, str | None]]] = {}
    for run_id, seq, node_id, next_node, _ in steps:
        taken.setdefault(run_id, []).append((seq, node_id, next_node))
    assert {run_id: sorted(run_path) for run_id, run_path in taken.items()} == dict.fromkeys(
        runs, path
    )

    # One delivery per customer and send node, keyed by its run and step, the one the step
    # names; none refused by a policy.
    assert len(deliveries) == len(sends) * customer_count
    assert set(Counter((d.customer_id, d.template_key) for d in deliveries).values()) == {1}
    by_key = {d.idempotency_key: d.id for d in deliveries}
    assert set(by_key) == {f"journey:{run}:{seq}" for run in runs for seq in sends.values()}
    named = {f"journey:{run_id}:{seq}": delivery for run_id, seq, _, _, delivery in steps}
    assert {key: named[key] for key in by_key} == by_key
    refused = {DeliveryStatus.SUPPRESSED, DeliveryStatus.FAILED}
    assert [d.id for d in deliveries if d.status in refused] == []

    # One Welcomed event per customer, keyed by its run and step.
    assert Counter(customer for customer, _ in welcomed) == {
        r.customer_id: 1 for r in runs.values()
    }
    assert {key for _, key in welcomed} == {f"journey:{run}:{EMIT_STEP}" for run in runs}


# --- the tests ---


def test_worker_killed_mid_batch_then_restarted_sends_each_message_once(
    database: Database, spawn: Spawn
) -> None:
    customer_count, nodes = 3000, 3  # send email -> emit -> send email
    publish_onboarding(MessageChannel.EMAIL, nodes=nodes)
    sign_up(customer_count, email=True)
    assert count_runs(database, JourneyRun.state == RunState.ACTIVE) == customer_count
    # 6 batches of runs, each a write of 1,500 node executions that outlasts the looks of
    # inside_a_long_write on a quick machine too (batches of 100 could all be done before
    # the looks caught one); deliveries go to the provider one per round, so the worker's
    # other write transactions are short, and the kill lands in a batch of runs.
    settings = {"REGULARS_JOURNEY_BATCH_SIZE": "500", "REGULARS_DISPATCH_BATCH_SIZE": "1"}
    moved = JourneyRun.steps > 0

    first = spawn("first", **settings)
    some = customer_count // 5
    wait_for(lambda: count_runs(database, moved) >= some, "a fifth of the runs moved", first)
    batch_in_flight = inside_a_long_write(database, looks=4)
    wait_for(batch_in_flight, "a batch in flight", first, every=0.02)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert 0 < count_runs(database, moved) < customer_count  # killed half-way

    second = spawn("second", **settings)
    completed = JourneyRun.state == RunState.COMPLETED
    wait_for(lambda: count_runs(database, completed) == customer_count, "every run", second)
    assert second.stop() == 0

    assert_each_step_ran_once(database, customer_count, nodes=nodes)
    for worker in (first, second):
        assert TROUBLE.search(worker.output) is None, worker.output


if os.environ.get("REGULARS_TEST_DATABASE_URL"):  # exists only where PostgreSQL does

    @pytest.mark.parametrize("backend", ["postgresql"])
    def test_three_workers_on_postgresql_run_each_step_exactly_once(
        database: Database, spawn: Spawn
    ) -> None:
        # Send in-app -> emit: the inbox needs no address, so a customer is one track.
        customer_count, nodes = 20_000, 2
        publish_onboarding(MessageChannel.INAPP, nodes=nodes)
        sign_up(customer_count, email=False, chunk=2000)
        assert count_runs(database, JourneyRun.state == RunState.ACTIVE) == customer_count

        workers = [spawn(name) for name in ("a", "b", "c")]
        completed = JourneyRun.state == RunState.COMPLETED
        seen_moving: set[str] = set()

        def all_completed() -> bool:
            seen_moving.update(moving_runs(database))
            return count_runs(database, completed) == customer_count

        wait_for(all_completed, "every run", *workers)
        assert [worker.stop() for worker in workers] == [0, 0, 0]
        assert seen_moving == {"worker-a", "worker-b", "worker-c"}  # each did its share

        assert_each_step_ran_once(database, customer_count, nodes=nodes)
        for worker in workers:
            assert TROUBLE.search(worker.output) is None, worker.output
