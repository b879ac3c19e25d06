"""What every benchmark needs: fresh databases, a real server process, figures as JSON lines."""

from __future__ import annotations

import http.client
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from regulars.customers.models import Customer, Event
from regulars.db import Database
from regulars.migrate import upgrade

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/regulars_bench"
STARTUP_SECONDS = 30.0


def figure(bench: str, name: str, db: str, value: float, unit: str, **extra: object) -> None:
    """Print one figure as a JSON line, as STYLE.md asks."""
    line = {"bench": bench, "figure": name, "db": db, "value": round(value, 2), "unit": unit}
    print(orjson.dumps({**line, **extra}).decode(), flush=True)


def fresh_database(db: str, *, pg_url: str) -> str:
    """A migrated, empty database: a new SQLite file in /tmp, or PostgreSQL dropped and made."""
    if db == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="regulars-bench-")) / "bench.db"
        url = f"sqlite:///{path}"
    else:
        url = pg_url
        target = make_url(pg_url)
        admin = target.set(database="postgres").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{target.database}"')
    upgrade(url)
    return url


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    pid: int

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def peak_rss_mb(self) -> float:
        """VmHWM, the most resident memory a process ever had, summed over the server's
        processes (the only one, or uvicorn's supervisor and each of its workers)."""
        return sum(_peak_rss_mb(pid) for pid in [self.pid, *_children(self.pid)])

    def cpu_seconds(self) -> tuple[float, float]:
        """User and system CPU time the server's processes have used so far."""
        times = [_cpu_seconds(pid) for pid in [self.pid, *_children(self.pid)]]
        return sum(user for user, _ in times), sum(system for _, system in times)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _cpu_seconds(pid: int) -> tuple[float, float]:
    # /proc/PID/stat: the fields after the command's closing parenthesis; utime and stime
    # are the 14th and 15th of the line, in clock ticks.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_server(
    database_url: str, *, workers: int = 1, embedded_worker: bool = False
) -> Iterator[Server]:
    """`uvicorn regulars.app:create_server_app` on loopback against `database_url`, with `workers`
    server processes (as `regulars serve --workers` runs it), the background worker inside
    it or not."""
    port = free_port()
    env = {
        **os.environ,
        "REGULARS_DATABASE_URL": database_url,
        "REGULARS_EMBEDDED_WORKER": "true" if embedded_worker else "false",
        "REGULARS_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "uvicorn", "regulars.app:create_server_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    command += ["--no-access-log", "--workers", str(workers)]
    process = subprocess.Popen(command, env=env)
    try:
        server = Server("127.0.0.1", port, process.pid)
        _wait_until_ready(server, process)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def running_worker(database_url: str, *, threads: int = 1) -> Iterator[None]:
    """`regulars worker -c threads` against `database_url`, as a process of its own (how
    PostgreSQL runs the worker beside the server), once it says it started."""
    env = {**os.environ, "REGULARS_DATABASE_URL": database_url, "REGULARS_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "regulars", "worker", "--concurrency", str(threads)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # "worker ... started: ...", or nothing if it died
        if "started" not in first:
            raise RuntimeError(f"the worker did not start: {first!r}, exit {process.poll()}")
        yield
    finally:
        process.terminate()
        process.wait(timeout=60)


def _wait_until_ready(server: Server, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            conn = server.connection()
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.05)  # readiness poll of a real server, bounded by the deadline
    raise RuntimeError(f"the server did not answer within {STARTUP_SECONDS} s")


# ---- the raw operation every ingestion figure is compared with -------------------------------


def raw_event_row(message: Mapping[str, Any], customer_id: str) -> dict[str, Any]:
    """The events row a message becomes, without validation, identities or facts."""
    at = datetime.fromisoformat(message["timestamp"])
    return {
        "customer_id": customer_id,
        "source": "bench-raw",
        "message_id": message["messageId"],
        "type": message["type"],
        "name": message.get("event") or message.get("name"),
        "properties": message.get("properties") or message.get("traits") or {},
        "context": message.get("context") or {},
        "timestamp": at,
        "received_at": at,
        "sent_at": None,
    }


def raw_insert_rate(
    database: Database, messages: Iterable[Mapping[str, Any]], *, rows_per_commit: int
) -> float:
    """Rows per second of a plain executemany INSERT of the same rows into the events table,
    spread over customers that exist (the foreign key holds)."""
    with database.writer.connect() as conn:
        owners = list(conn.scalars(select(Customer.id).order_by(Customer.id).limit(10_000)))
    rng = random.Random(99)
    rows = [raw_event_row(message, rng.choice(owners)) for message in messages]
    began = time.perf_counter()
    for start in range(0, len(rows), rows_per_commit):
        with database.writer.begin() as conn:
            conn.execute(insert(Event), rows[start : start + rows_per_commit])
    return len(rows) / (time.perf_counter() - began)
