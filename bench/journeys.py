"""Journeys: the worker moving 100,000 runs through a four-node journey, and the time from a
tracked event to its journey's message reaching the provider, with the embedded worker.

    python -m bench.journeys [--quick] [--db sqlite|postgresql|both] [--customers N]
                             [--seconds S] [--rate R] [--seed N] [--pg-url URL] [--profile]
                             [--drain-processes N] [--worker-process] [--worker-threads N]
                             [--drains-only]

The store: N customers (100,000; --quick 2,000) made from --seed, each an identify (email,
phone, first name, locale en-GB or de-DE 50/50 with the time zone Europe/London or
Europe/Berlin to match) ingested 1,000 per transaction an hour before T0 = Monday 2026-03-02
10:00 UTC (daytime in both zones: quiet hours defer nothing), then email and SMS consent
for everyone in one INSERT ... SELECT per table and channel. A segment of the customers
with email consent (all of them), two marketing templates (spring_welcome on email,
spring_nudge on SMS), default frequency caps, no provider (the sandbox's default; nothing is
delivered during the figure anyway).

The journey (trigger: schedule, the segment at T0):

    welcome: send spring_welcome by email -> wait_a_day: delay 1d -> ordered: branch on
    "performed Order Completed in the last day" -> yes: the run ends / no: nudge: send
    spring_nudge by SMS (the run ends)

Node-execution figures, per database, in this process:

- enroll_runs_per_s: journeys.service.enroll_scheduled at T0 (segment walk, entry rules,
  the runs inserted), one transaction.
- Day 0, the clock frozen at T0: journeys.tasks.advance_runs (the worker's queue drain, one
  transaction per batch of REGULARS_JOURNEY_BATCH_SIZE runs) called until it answers 0:
  each run executes `welcome` (an email queued through messages.send_many) and `wait_a_day`
  (the run waits). Then 30% of the customers (drawn from --seed) perform Order Completed
  between T0+2h and T0+22h (ingested, not timed), and on PostgreSQL journey_runs,
  journey_steps, deliveries and events are vacuumed, as autovacuum would during a day.
- Day 1, the clock at T0 + 1 day + 1 minute: the drain again: `wait_a_day` (due now),
  `ordered` (one condition query per batch) and, for the 70% who did not order, `nudge`.
- node_executions_per_s over both days (the sum of advance_runs' answers over the time spent
  inside it), node_executions_day0_per_s and node_executions_day1_per_s; `ratio` against
  raw_writes_per_s: per node execution one journey_runs UPDATE by id (the columns
  save_runs writes) and one journey_steps INSERT, executemany, 500 of each per
  transaction, on the same tables after the run (up to 100,000 of each). Deliveries queued
  by the journey are counted (deliveries_queued) but not delivered: that is the messages
  bench's subject. node_executions_peak_rss: this process's peak resident memory over the
  two drains.
- --drain-processes N (PostgreSQL; SQLite has one writer and stays at 1): each day's drain
  runs in N worker processes side by side, as N `regulars worker` processes would (the
  claims skip each other's locked runs). The rates are all processes' executions over the
  wall time from their common start to the last one done; the peak RSS is the largest of
  one process; the raw writes stay one process.

With --profile the drains run under cProfile (slower: the figures are marked profiled) and
the 30 functions with the most cumulative time are printed to stderr.

Event-to-provider figures: the queued deliveries of the above are cancelled, an `smtp`
provider points at the counting sink (bench/smtp_sink.py, a process of its own), and a
second live journey (trigger: event Order Completed; one node: send order_thanks, a
transactional email) is published. A server (uvicorn, REGULARS_EMBEDDED_WORKER=true) on the
same database then takes POST /v1/track (Order Completed, write key as HTTP Basic user) at
--rate per second (100) for WARM_UP_SECONDS (2) and then --seconds (30; --quick 5), each
event for a distinct customer, open loop from CLIENTS threads: event i leaves at t0 + i /
rate. The warm-up events (a fresh server and worker compile statements, load journeys and
templates, run the first occurrence of each recurring job) are printed on their own
(warm_up_event_to_provider_max_ms). Per measured event, from the client's send (wall clock)
to the sink accepting the message: p50/p95/p99/max (event_to_provider_*), and when the
slowest 1% were sent (event_to_provider_slowest_count); the HTTP answer's p50/p99
(track_http_*); server_cpu_ms_per_event (the server's CPU time over the events sent, all
its threads, with its user and system parts: above 1000 / rate the one process cannot keep
up);
track_requests_per_s, the rate the clients reached (they fall behind when
the server answers slower than CLIENTS / rate) with late_p99_ms and the jobs the worker
ran meanwhile (server_jobs: kind -> milliseconds from each one's due time to its end).
Where the time goes, per event: received_to_queued (the server receiving the event to the
journey queuing its delivery: the worker noticing the new run and moving it) and
queued_to_provider (that to the sink accepting the message: the worker's delivery round and
the SMTP dialogue), from the stored times of the server's clock. --worker-process: the
server runs no worker and one `regulars worker` process runs beside it (PostgreSQL's
default deployment), with
--worker-threads N threads (`regulars worker -c N`, PostgreSQL only). A segment sweep
runs before the server starts, as messages does, so the server's first one is not the
built-ins' installation; and the drains' writes are put away, as a quiet hour would: on
PostgreSQL deliveries, journey_runs and jobs are vacuumed, on SQLite the WAL is folded
back and emptied (PRAGMA wal_checkpoint(TRUNCATE); its size is logged).
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import http.client
import multiprocessing
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
from sqlalchemy import Table, bindparam, func, insert, literal, select, update
from sqlalchemy.engine import make_url

from bench.common import figure, fresh_database, running_server, running_worker
from bench.smtp_sink import SinkProcess
from regulars.customers import service as customers
from regulars.customers.models import Consent, ConsentChange, Customer, Event
from regulars.db import Database, UTCDateTime, get_database, session_scope, set_database
from regulars.identity.service import create_source
from regulars.jobs.models import Job
from regulars.journeys import service as journeys
from regulars.journeys import tasks as journey_tasks
from regulars.journeys.models import JourneyRun, JourneyStep, RunState
from regulars.journeys.schemas import JourneyCreate
from regulars.kit import clock, runtime
from regulars.messages import providers, templates
from regulars.messages.models import Category, Delivery, DeliveryStatus, MessageChannel
from regulars.messages.schemas import ProviderWrite, TemplateWrite
from regulars.segments import service as segments
from regulars.segments.schemas import SegmentCreate

BENCH = "journeys"
FULL_CUSTOMERS, QUICK_CUSTOMERS = 100_000, 2_000
FULL_SECONDS, QUICK_SECONDS = 30.0, 5.0
RATE = 100.0
CLIENTS = 4
CHUNK = 1000  # customers (or orders) per ingest transaction
BUYER_SHARE = 0.3
RAW_MAX = 100_000
RAW_BATCH = 500
PG_URL = "postgresql://postgres@127.0.0.1:5432/regulars_bench_journeys"
T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
DAY1 = T0 + timedelta(days=1, minutes=1)
SETTLE_SECONDS = 60.0
# Events sent before the measured ones, at the same rate: a server and a worker just started
# compile their statements, load the journeys and templates and run the first occurrence of
# each recurring job. Their latency is printed on its own.
WARM_UP_SECONDS = 2.0
SENDER = "Bench Coffee <news@shop.example>"
AUDIENCE, JOURNEY, LATENCY_JOURNEY = "email-subscribers", "spring-welcome", "order-thanks"
WELCOME, NUDGE, THANKS = "spring_welcome", "spring_nudge", "order_thanks"
ORDER = "Order Completed"
ENGLISH = ("Olivia", "James", "Amelia", "Noah", "Isla", "Oliver", "Ava", "Jack", "Mia", "Leo")
GERMAN = ("Emma", "Lukas", "Hannah", "Jonas", "Lea", "Elias", "Mia", "Finn", "Jürgen", "Zoë")


def log(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


# ---- the store ---------------------------------------------------------------------------------


def user_id(n: int) -> str:
    return f"u{n:06d}"


def customer_messages(start: int, count: int, seed: int) -> list[dict[str, Any]]:
    """An identify for each customer of [start, start + count)."""
    rng = random.Random(f"{seed}-{start}")
    messages = []
    for n in range(start, start + count):
        german = rng.random() < 0.5
        traits = {
            "email": f"c{n:06d}@example.com",
            "phone": f"+49151{n:08d}",
            "firstName": rng.choice(GERMAN if german else ENGLISH),
            "locale": "de-DE" if german else "en-GB",
            "timezone": "Europe/Berlin" if german else "Europe/London",
        }
        messages.append(
            {
                "type": "identify",
                "userId": user_id(n),
                "messageId": f"i-{n}",
                "timestamp": (T0 - timedelta(hours=1)).isoformat(),
                "traits": traits,
            }
        )
    return messages


def ingest(messages: Sequence[dict[str, Any]]) -> None:
    for start in range(0, len(messages), CHUNK):
        batch = messages[start : start + CHUNK]
        with session_scope() as session:
            result = customers.ingest(session, batch, source="bench")
        if result.accepted != len(batch):
            raise RuntimeError(f"ingest accepted {result.accepted} of {len(batch)}")


def build_store(count: int, seed: int) -> None:
    for start in range(0, count, CHUNK):
        ingest(customer_messages(start, min(CHUNK, count - start), seed))
    subscribe_everyone(T0 - timedelta(hours=1))


def subscribe_everyone(at: datetime) -> None:
    """Email and SMS consent for every customer, with its history row: one INSERT ... SELECT
    per table and channel. (An identify's `consents` trait does the same one customer at a
    time, about 110 customers/s, which would be most of a full run.)"""
    with session_scope() as session:
        for channel in ("email", "sms"):
            values = [literal(channel), literal(""), literal("subscribed"), literal("bench")]
            chosen = select(Customer.id, *values, literal(at, UTCDateTime()))
            names = ["customer_id", "channel", "topic", "status", "source"]
            session.execute(insert(Consent).from_select([*names, "updated_at"], chosen))
            session.execute(insert(ConsentChange).from_select([*names, "changed_at"], chosen))


def orders(count: int, seed: int) -> list[dict[str, Any]]:
    """BUYER_SHARE of the customers order once between T0+2h and T0+22h, in time order."""
    rng = random.Random(f"{seed}-orders")
    buyers = rng.sample(range(count), int(count * BUYER_SHARE))
    timed = sorted((T0 + timedelta(seconds=rng.uniform(2, 22) * 3600), n) for n in buyers)
    return [
        {
            "type": "track",
            "userId": user_id(n),
            "messageId": f"o-{n}",
            "timestamp": at.isoformat(),
            "event": ORDER,
            "properties": {"order_id": f"o-{n}", "revenue": 24.5, "currency": "EUR"},
        }
        for at, n in timed
    ]


CONTENT: dict[MessageChannel, dict[str, Any]] = {
    MessageChannel.EMAIL: {
        "subject": "Hello {{ customer.first_name }}, the spring roasts are in",
        "body": (
            "<mjml><mj-body><mj-section><mj-column>"
            "<mj-text>Hi {{ customer.first_name }}, our spring roasts are in.</mj-text>"
            '<mj-button href="https://shop.example.com/spring">See the roasts</mj-button>'
            "</mj-column></mj-section></mj-body></mjml>"
        ),
    },
    MessageChannel.SMS: {"body": "Hi {{ customer.first_name }}, the spring roasts are waiting."},
}
THANKS_CONTENT = {
    "subject": "Order {{ event.order_id }} confirmed",
    "body": (
        "<mjml><mj-body><mj-section><mj-column>"
        "<mj-text>Thank you, {{ customer.first_name }}: order {{ event.order_id }} is"
        " confirmed.</mj-text></mj-column></mj-section></mj-body></mjml>"
    ),
}

BRANCH_RULE = {
    "type": "event",
    "name": ORDER,
    "op": "gte",
    "value": 1,
    "window": {"last": {"amount": 1, "unit": "days"}},
}
DEFINITION = {
    "trigger": {"type": "schedule", "segment": AUDIENCE, "at": T0.isoformat()},
    "start": "welcome",
    "nodes": {
        "welcome": {"type": "send", "template": WELCOME, "channel": "email", "next": "wait_a_day"},
        "wait_a_day": {"type": "delay", "duration": "1d", "next": "ordered"},
        "ordered": {"type": "branch", "condition": BRANCH_RULE, "no": "nudge"},
        "nudge": {"type": "send", "template": NUDGE, "channel": "sms"},
    },
}
LATENCY_DEFINITION = {
    "trigger": {"type": "event", "event": ORDER},
    "start": "thanks",
    "nodes": {"thanks": {"type": "send", "template": THANKS, "channel": "email"}},
}


def prepare_journey() -> None:
    """Audience segment, the two marketing templates, the journey published."""
    rule = {"type": "consent", "channel": "email"}
    with session_scope() as session:
        segments.create(session, SegmentCreate(key=AUDIENCE, name="Email subscribers", rule=rule))
        segments.compute(session, AUDIENCE, now=T0)
        for key, channel in ((WELCOME, MessageChannel.EMAIL), (NUDGE, MessageChannel.SMS)):
            data = TemplateWrite(
                name=key.replace("_", " ").capitalize(),
                category=Category.MARKETING,
                locales={"en": CONTENT[channel]},
            )
            templates.save(session, key, channel, data)
        journeys.create(
            session,
            JourneyCreate(key=JOURNEY, name="Spring welcome", definition=DEFINITION),
        )
        journeys.publish(session, JOURNEY)


# ---- the node executions, driven by the worker's queue drain -----------------------------------


@dataclass
class Drain:
    executions: int = 0
    seconds: float = 0.0
    rounds: int = 0
    cpu_seconds: float = 0.0  # this process's, SQLite's included: steadier than the wall
    round_ms: list[float] = field(default_factory=list)

    def trend(self) -> dict[str, float]:
        """Mean ms of the first and the last 10 rounds: a queue that slows as it drains
        (dead index entries, a growing table) shows here."""
        if len(self.round_ms) < 20:
            return {}
        first, last = self.round_ms[:10], self.round_ms[-10:]
        return {
            "first_rounds_ms": round(sum(first) / 10, 1),
            "last_rounds_ms": round(sum(last) / 10, 1),
        }


def drain(profiler: cProfile.Profile | None, *, worker: str = "bench") -> Drain:
    """Call the journeys queue drain at the clock's now until it finds nothing due."""
    found = Drain()
    while True:
        now = clock.now()
        began, cpu_began = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        executed = journey_tasks.advance_runs(worker, now, 500)
        if profiler is not None:
            profiler.disable()
        seconds = time.perf_counter() - began
        found.seconds += seconds
        found.cpu_seconds += time.process_time() - cpu_began
        if not executed:
            return found
        found.executions += executed
        found.rounds += 1
        found.round_ms.append(seconds * 1000)


def _cpu_us_per_execution(part: Drain) -> float | None:
    """The draining process's CPU per node execution (None for drains in other processes,
    whose CPU this process does not see)."""
    if not part.cpu_seconds or not part.executions:
        return None
    return round(part.cpu_seconds / part.executions * 1e6, 1)


def _drain_in_child(url: str, at: datetime, worker: str, ready: Any, go: Any, out: Any) -> None:
    """One worker process of a parallel drain: connect, wait for the start, drain at `at`."""
    set_database(Database(url))
    runtime.settle_heap()  # as `regulars worker` does once started
    with clock.frozen(at):
        ready.put(worker)
        go.wait()
        found = drain(None, worker=worker)
    out.put((found.executions, found.rounds, _memory_mb("VmHWM")))


def drain_in_processes(url: str, processes: int) -> tuple[Drain, float]:
    """The drain as `processes` worker processes run it side by side (PostgreSQL's claims skip
    each other's locked runs): (executions over the wall time from the common start to the
    last process done, the largest peak RSS of one process)."""
    context = multiprocessing.get_context("spawn")
    ready, out, go = context.Queue(), context.Queue(), context.Event()
    children = [
        context.Process(
            target=_drain_in_child, args=(url, clock.now(), f"bench-{k}", ready, go, out)
        )
        for k in range(processes)
    ]
    for child in children:
        child.start()
    for _ in children:
        ready.get(timeout=120)
    began = time.perf_counter()
    go.set()
    answers = [out.get(timeout=3600) for _ in children]
    seconds = time.perf_counter() - began
    for child in children:
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"a drain process exited with {child.exitcode}")
    found = Drain(sum(a[0] for a in answers), seconds, sum(a[1] for a in answers))
    return found, max(a[2] for a in answers)


def run_counts() -> dict[str, int]:
    query = select(JourneyRun.state, JourneyRun.node_id, func.count()).group_by(
        JourneyRun.state, JourneyRun.node_id
    )
    with session_scope(readonly=True) as session:
        return {f"{state}@{node}": int(n) for state, node, n in session.execute(query)}


def failed_runs() -> int:
    query = select(func.count()).where(JourneyRun.failures > 0)
    with session_scope(readonly=True) as session:
        return int(session.scalar(query) or 0)


def journey_deliveries() -> dict[str, int]:
    query = (
        select(Delivery.channel, Delivery.status, func.count())
        .where(Delivery.idempotency_key.like("journey:%"))
        .group_by(Delivery.channel, Delivery.status)
    )
    with session_scope(readonly=True) as session:
        return {f"{ch}:{st}": int(n) for ch, st, n in session.execute(query)}


def vacuum(url: str, tables: Sequence[str]) -> None:
    """What autovacuum does in a day (this machine's PostgreSQL runs with it off)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table in tables:
            conn.execute(f"VACUUM ANALYZE {table}")


def fold_wal() -> None:
    """Fold SQLite's WAL back into the database file and empty it, as the server's
    checkpointer does in a quiet second, so the latency phase does not pay for the drains'
    writes (its PostgreSQL counterpart is `vacuum`)."""
    connection = get_database().writer.raw_connection()
    try:
        busy, frames, folded = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        log(f"sqlite: WAL folded before the latency phase: {folded:,} of {frames:,} pages"
            f"{' (busy)' if busy else ''}")  # fmt: skip
    finally:
        connection.close()


def _reset_peak_rss() -> float:
    """Start VmHWM (the peak) again from the current RSS, which it answers in MB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _memory_mb("VmRSS")


def _memory_mb(name: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {name} in /proc/self/status")


def enroll_figure(db: str, *, count: int) -> None:
    """The schedule trigger fires at T0: every member of the segment enters, one transaction."""
    began = time.perf_counter()
    with session_scope() as session:
        enrolled = journeys.enroll_scheduled(session, now=T0)
    seconds = time.perf_counter() - began
    if enrolled != count:
        raise RuntimeError(f"{enrolled} runs enrolled for {count} customers")
    figure(BENCH, "enroll_runs_per_s", db, enrolled / seconds, "runs/s", runs=enrolled,
           seconds=round(seconds, 2))  # fmt: skip


@dataclass(frozen=True)
class Days:
    day0: Drain
    day1: Drain
    peak_rss_mb: float
    rss_at_start_mb: float


def run_days(frozen: clock.FrozenClock, db: str, url: str, *, count: int, seed: int,
             profiler: cProfile.Profile | None, processes: int) -> Days:  # fmt: skip
    """Day 0's drain at T0, the day's orders, day 1's drain; the runs checked after each."""
    at_start = _reset_peak_rss()
    day0, peak_day0 = _drain_day(url, profiler, processes)
    expect_runs({f"{RunState.WAITING}@wait_a_day": count}, "day 0")
    bought = orders(count, seed)
    frozen.set(T0 + timedelta(hours=23))
    ingest(bought)
    if db == "postgresql":
        vacuum(url, ("journey_runs", "journey_steps", "deliveries", "events"))
    frozen.set(DAY1)
    _reset_peak_rss()
    day1, peak_day1 = _drain_day(url, profiler, processes)
    expect_runs({f"{RunState.COMPLETED}@ordered": len(bought),
                 f"{RunState.COMPLETED}@nudge": count - len(bought)}, "day 1")  # fmt: skip
    return Days(day0, day1, max(peak_day0, peak_day1), at_start)


def _drain_day(url: str, profiler: cProfile.Profile | None, processes: int) -> tuple[Drain, float]:
    """A day's drain and the peak RSS of a process that ran it."""
    if processes > 1:
        return drain_in_processes(url, processes)
    runtime.settle_heap()  # as `regulars worker` does once started
    return drain(profiler), _memory_mb("VmHWM")


def expect_runs(expected: dict[str, int], when: str) -> None:
    found, failed = run_counts(), failed_runs()
    if found != expected or failed:
        raise RuntimeError(f"after {when}: {found} (expected {expected}), {failed} runs failed")


def execution_figures(
    db: str, url: str, *, count: int, seed: int, profile: bool, processes: int
) -> None:
    profiler = cProfile.Profile() if profile else None
    with clock.frozen(T0) as frozen:
        enroll_figure(db, count=count)
        days = run_days(frozen, db, url, count=count, seed=seed, profiler=profiler,
                        processes=processes)  # fmt: skip
    day0, day1 = days.day0, days.day1
    raw, raw_rows = raw_write_rate(day0.executions + day1.executions)
    extra: dict[str, Any] = {"profiled": True} if profile else {}
    total = Drain(day0.executions + day1.executions, day0.seconds + day1.seconds,
                  day0.rounds + day1.rounds, day0.cpu_seconds + day1.cpu_seconds)  # fmt: skip
    for name, part in (("node_executions", total), ("node_executions_day0", day0),
                       ("node_executions_day1", day1)):  # fmt: skip
        rate = part.executions / part.seconds
        figure(BENCH, f"{name}_per_s", db, rate, "executions/s", ratio=round(rate / raw, 3),
               executions=part.executions, seconds=round(part.seconds, 2), rounds=part.rounds,
               cpu_us_per_execution=_cpu_us_per_execution(part), runs=count,
               worker_processes=processes, **part.trend(), **extra)  # fmt: skip
    figure(BENCH, "raw_writes_per_s", db, raw, "rows/s", rows=raw_rows, per_commit=RAW_BATCH)
    queued = journey_deliveries()
    figure(BENCH, "deliveries_queued", db, sum(queued.values()), "deliveries", by=queued)
    figure(BENCH, "node_executions_peak_rss", db, days.peak_rss_mb, "MB",
           at_start_mb=round(days.rss_at_start_mb, 1), worker_processes=processes)  # fmt: skip
    if profiler is not None:
        log("cProfile of the two drains, top 30 by cumulative time:")
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("cumulative").print_stats(30)
        stats.sort_stats("tottime").print_stats(25)
        saved = Path(tempfile.gettempdir()) / f"bench-journeys-{db}.pstats"
        stats.dump_stats(saved)
        log(f"the whole profile: {saved} (python -m pstats {saved})")


# ---- the raw operation: the writes of a node execution alone -----------------------------------


def _table(model: type[Any]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


RUNS, STEPS = _table(JourneyRun), _table(JourneyStep)
RAW_UPDATE = (
    update(RUNS)
    .where(RUNS.c.id == bindparam("run_id"))
    .values(
        state=bindparam("state"),
        node_id=bindparam("node_id"),
        arrived_at=bindparam("arrived_at"),
        due_at=bindparam("due_at"),
        listen_for=bindparam("listen_for"),
        variant=bindparam("variant"),
        steps=bindparam("steps"),
        ended_at=bindparam("ended_at"),
        exit_reason=bindparam("exit_reason"),
    )
)


def raw_write_rate(executions: int) -> tuple[float, int]:
    """(rows per second, rows) of a plain executemany UPDATE of journey_runs by id and
    INSERT into journey_steps, one of each per row, RAW_BATCH of each per transaction."""
    rows = min(executions, RAW_MAX)
    with session_scope(readonly=True) as session:
        runs = [
            (r.id, r.journey_id, r.version, r.steps)
            for r in session.execute(
                select(RUNS.c.id, RUNS.c.journey_id, RUNS.c.version, RUNS.c.steps).order_by(
                    RUNS.c.id
                )
            )
        ]
    at = DAY1
    updates, inserts = [], []
    for k in range(rows):
        run_id, journey_id, version, steps = runs[k % len(runs)]
        seq = 1000 + k // len(runs)  # past any real step of the run
        updates.append({"run_id": run_id, "state": RunState.COMPLETED, "node_id": "nudge",
                        "arrived_at": at, "due_at": None, "listen_for": None, "variant": None,
                        "steps": steps, "ended_at": at, "exit_reason": "completed"})  # fmt: skip
        inserts.append({"run_id": run_id, "journey_id": journey_id, "version": version,
                        "seq": seq, "node_id": "nudge", "outcome": "next", "next_node": None,
                        "delivery_id": None, "detail": None, "at": at})  # fmt: skip
    writer = get_database().writer
    began = time.perf_counter()
    for start in range(0, rows, RAW_BATCH):
        with writer.begin() as conn:
            conn.execute(RAW_UPDATE, updates[start : start + RAW_BATCH])
            conn.execute(insert(STEPS), inserts[start : start + RAW_BATCH])
    return rows / (time.perf_counter() - began), rows


# ---- from a tracked event to the provider, with the embedded worker ----------------------------


def prepare_latency(sink: SinkProcess) -> str:
    """Cancel what day 0 and 1 queued, add the SMTP provider and the event-triggered journey;
    answers a write key."""
    with session_scope() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED]))
            .values(status=DeliveryStatus.CANCELLED, next_attempt_at=None)
            .execution_options(synchronize_session=False)
        )
        config = {"host": sink.host, "port": sink.port, "security": "none", "from_address": SENDER}
        providers.save(
            session, "sink", ProviderWrite(channel=MessageChannel.EMAIL, kind="smtp", config=config)
        )
        data = TemplateWrite(name="Order thanks", locales={"en": THANKS_CONTENT})
        templates.save(session, THANKS, MessageChannel.EMAIL, data)
        journeys.create(
            session,
            JourneyCreate(key=LATENCY_JOURNEY, name="Order thanks", definition=LATENCY_DEFINITION),
        )
        journeys.publish(session, LATENCY_JOURNEY)
        segments.sweep(session)
        return create_source(session, "bench").write_key


@dataclass(frozen=True)
class Answer:
    sent_at: float  # time.time() at the client's send
    http_ms: float
    late_ms: float  # how far behind its schedule the request left


def track_bodies(total: int) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "userId": user_id(i),
                "event": ORDER,
                "messageId": f"lat-{i}",
                "properties": {"order_id": f"L-{i:05d}", "revenue": 31.5, "currency": "EUR"},
            }
        )
        for i in range(total)
    ]


def send_steadily(port: int, write_key: str, bodies: Sequence[bytes], rate: float) -> list[Answer]:
    """Open loop: event i leaves at t0 + i / rate, from CLIENTS threads taking turns."""
    answers: list[Answer | None] = [None] * len(bodies)
    failures: list[str] = []
    t0 = time.perf_counter() + 0.5
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}

    def client(first: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in range(first, len(bodies), CLIENTS):
            due = t0 + i / rate
            time.sleep(max(0.0, due - time.perf_counter()))  # the schedule, not a wait for work
            began, wall = time.perf_counter(), time.time()
            conn.request("POST", "/v1/track", bodies[i], headers)
            response = conn.getresponse()
            text = response.read()
            if response.status != 200:
                failures.append(f"{response.status} {text[:300]!r}")
                continue
            answers[i] = Answer(wall, (time.perf_counter() - began) * 1000, (began - due) * 1000)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} events failed; first: {failures[0]}")
    return [a for a in answers if a is not None]


def wait_for_sink(sink: SinkProcess, expected: int) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while sink.count() < expected and time.monotonic() < deadline:
        time.sleep(0.1)  # the server's worker is still sending; bounded by the deadline


def thanks_addresses() -> dict[str, str]:
    """Delivery id -> address of the order_thanks deliveries."""
    query = select(Delivery.id, Delivery.address).where(Delivery.template_key == THANKS)
    with session_scope(readonly=True) as session:
        return {row.id: str(row.address) for row in session.execute(query)}


def event_index(address: str) -> int:
    """Event i went to customer i, whose address is u<i>@...: the i of an address."""
    return int(address.split("@")[0][1:])


def hop_times() -> tuple[dict[int, float], dict[int, float]]:
    """Per event i (its messageId lat-i): when the server received it and when the journey
    queued its delivery, as epoch seconds of the server's clock."""
    received_query = select(Event.message_id, Event.received_at).where(
        Event.message_id.like("lat-%")
    )
    queued_query = select(Delivery.address, Delivery.created_at).where(
        Delivery.template_key == THANKS
    )
    with session_scope(readonly=True) as session:
        received = {
            int(message_id[4:]): at.timestamp()
            for message_id, at in session.execute(received_query)
        }
        queued = {
            event_index(str(address)): at.timestamp()
            for address, at in session.execute(queued_query)
        }
    return received, queued


def jobs_finished_since(since: datetime) -> dict[str, list[int]]:
    """Kind -> for each job of that kind that finished since: milliseconds from its due time
    to its end (its run, and any wait for the worker), to tell a job's stall in the window."""
    query = select(Job.kind, Job.due_at, Job.finished_at).where(Job.finished_at >= since)
    found: dict[str, list[int]] = {}
    with session_scope(readonly=True) as session:
        for kind, due_at, finished_at in session.execute(query.order_by(Job.finished_at)):
            took = (finished_at or due_at) - due_at
            found.setdefault(str(kind), []).append(round(took.total_seconds() * 1000))
    return found


def percentiles(db: str, name: str, values: list[float], cuts: Sequence[int]) -> None:
    marks = statistics.quantiles(values, n=100, method="inclusive")
    for cut in cuts:
        figure(BENCH, f"{name}_p{cut}_ms", db, marks[cut - 1], "ms", count=len(values))
    figure(BENCH, f"{name}_max_ms", db, max(values), "ms")


def latency_figures(
    db: str,
    url: str,
    sink: SinkProcess,
    *,
    seconds: float,
    rate: float,
    count: int,
    worker_process: bool,
    worker_threads: int,
) -> None:
    total, warm_up = int(seconds * rate), int(WARM_UP_SECONDS * rate)
    if warm_up + total > count:
        raise SystemExit(f"{warm_up + total} events need as many customers; there are {count}")
    write_key = prepare_latency(sink)
    if db == "postgresql":
        vacuum(url, ("deliveries", "journey_runs", "jobs"))
    else:
        fold_wal()
    bodies = track_bodies(warm_up + total)
    sink.reset()
    worker = running_worker(url, threads=worker_threads) if worker_process else nullcontext()
    with running_server(url, embedded_worker=not worker_process) as server, worker:
        began, window = time.perf_counter(), datetime.now(UTC)
        cpu_before = server.cpu_seconds()
        sent = send_steadily(server.port, write_key, bodies, rate)
        achieved = len(sent) / (time.perf_counter() - began - 0.5)
        wait_for_sink(sink, warm_up + total)
        user, system = (
            (after - before) * 1000 / len(sent)
            for after, before in zip(server.cpu_seconds(), cpu_before, strict=True)
        )
    arrivals = sink.arrivals()
    addresses = thanks_addresses()
    by_event = {event_index(addresses[d]): at for d, at in arrivals.items()}
    if len(by_event) != warm_up + total:
        raise RuntimeError(
            f"{warm_up + total} events, {len(addresses)} deliveries, {len(arrivals)} at sink"
        )
    to_sink_all = [(by_event[i] - a.sent_at) * 1000 for i, a in enumerate(sent)]
    answers, to_sink = sent[warm_up:], to_sink_all[warm_up:]
    late = statistics.quantiles([a.late_ms for a in answers], n=100, method="inclusive")[98]
    figure(BENCH, "track_requests_per_s", db, achieved, "requests/s", target=rate,
           requests=len(sent), server_jobs=jobs_finished_since(window),
           late_p99_ms=round(late, 2),
           worker=f"{worker_threads} thread(s), own process" if worker_process else "embedded",
           )  # fmt: skip
    figure(BENCH, "server_cpu_ms_per_event", db, user + system, "ms",
           user_ms=round(user, 2), system_ms=round(system, 2),
           note="the server's CPU time (all threads, SQLite included) over the events sent; "
           f"at {rate:g} events/s one core is {1000 / rate:g} ms an event")  # fmt: skip
    figure(BENCH, "warm_up_event_to_provider_max_ms", db, max(to_sink_all[:warm_up]), "ms",
           events=warm_up, p50_ms=round(statistics.median(to_sink_all[:warm_up]), 2),
           note=f"the first {WARM_UP_SECONDS:g} s of a fresh server and worker, not in the "
           "percentiles below")  # fmt: skip
    percentiles(db, "event_to_provider", to_sink, (50, 95, 99))
    slowest = sorted(range(total), key=to_sink.__getitem__)[-max(1, total // 100) :]
    first_sent = answers[0].sent_at
    figure(BENCH, "event_to_provider_slowest_count", db, len(slowest), "events",
           sent_at_s=sorted(round(answers[i].sent_at - first_sent, 1) for i in slowest),
           note="when the slowest 1% were sent: together, a stall; spread, a load")  # fmt: skip
    percentiles(db, "track_http", [a.http_ms for a in answers], (50, 99))
    received, queued = hop_times()
    measured = range(warm_up, warm_up + total)
    percentiles(db, "received_to_queued", [(queued[i] - received[i]) * 1000 for i in measured],
                (50, 99))  # fmt: skip
    percentiles(db, "queued_to_provider", [(by_event[i] - queued[i]) * 1000 for i in measured],
                (50, 99))  # fmt: skip


# ---- one database, end to end ------------------------------------------------------------------


def drop_database(url: str) -> None:
    """Remove what fresh_database made: the SQLite work file, or the PostgreSQL database."""
    target = make_url(url)
    if url.startswith("sqlite"):
        directory = Path(str(target.database)).parent
        if directory.name.startswith("regulars-bench-"):
            shutil.rmtree(directory)
        return
    admin = target.set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')


def timed_step(label: str, work: Callable[[], object]) -> None:
    began = time.perf_counter()
    work()
    log(f"{label} in {time.perf_counter() - began:.1f} s")


def bench_database(
    db: str,
    *,
    count: int,
    seconds: float,
    rate: float,
    seed: int,
    pg_url: str,
    profile: bool,
    processes: int,
    worker_process: bool,
    worker_threads: int,
    drains_only: bool,
) -> None:
    url = fresh_database(db, pg_url=pg_url)
    set_database(Database(url))
    try:
        with clock.frozen(T0 - timedelta(hours=1)):  # the journey is published before T0
            timed_step(f"{db}: {count:,} customers", lambda: build_store(count, seed))
            timed_step(f"{db}: segment, templates, journey", prepare_journey)
        if db == "postgresql":
            vacuum(url, ("customers", "customer_identities", "events", "consents"))
        execution_figures(db, url, count=count, seed=seed, profile=profile, processes=processes)
        if drains_only:
            return
        with SinkProcess() as sink:
            latency_figures(db, url, sink, seconds=seconds, rate=rate, count=count,
                            worker_process=worker_process,
                            worker_threads=worker_threads)  # fmt: skip
    finally:
        set_database(None)
        drop_database(url)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.journeys",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="2,000 customers, 5 s of events")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None, help="of tracked events")
    parser.add_argument("--rate", type=float, default=RATE, help="tracked events/s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--profile", action="store_true", help="cProfile the drains (slower)")
    parser.add_argument(
        "--drain-processes",
        type=int,
        default=1,
        help="worker processes draining the runs side by side on PostgreSQL (SQLite: 1)",
    )
    parser.add_argument(
        "--worker-process",
        action="store_true",
        help="event to provider with `regulars worker` beside the server, not embedded",
    )
    parser.add_argument(
        "--worker-threads",
        type=int,
        default=1,
        help="threads of that worker process (`regulars worker -c N`; PostgreSQL only)",
    )
    parser.add_argument(
        "--drains-only",
        action="store_true",
        help="the node-execution figures only, no event-to-provider phase (to compare code)",
    )
    args = parser.parse_args()
    if args.worker_threads > 1 and (args.db != "postgresql" or not args.worker_process):
        parser.error("--worker-threads N needs --worker-process and --db postgresql")
    if args.drain_processes > 1 and args.profile:
        parser.error("--profile profiles one process: leave out --drain-processes")
    count = args.customers or (QUICK_CUSTOMERS if args.quick else FULL_CUSTOMERS)
    seconds = args.seconds or (QUICK_SECONDS if args.quick else FULL_SECONDS)
    for db in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        bench_database(
            db,
            count=count,
            seconds=seconds,
            rate=args.rate,
            seed=args.seed,
            pg_url=args.pg_url,
            profile=args.profile,
            processes=args.drain_processes if db == "postgresql" else 1,  # one writer on SQLite
            worker_process=args.worker_process,
            worker_threads=args.worker_threads,
            drains_only=args.drains_only,
        )


if __name__ == "__main__":
    main()
