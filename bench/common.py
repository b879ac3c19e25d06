"""What every benchmark needs: fresh databases, a real server process, figures as JSON lines."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
import psycopg
from sqlalchemy.engine import make_url

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
        """VmHWM: the most resident memory the server process ever had."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
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
def running_server(database_url: str) -> Iterator[Server]:
    """`uvicorn regulars.app:create_app` in one process on loopback, against `database_url`."""
    port = free_port()
    env = {
        **os.environ,
        "REGULARS_DATABASE_URL": database_url,
        "REGULARS_EMBEDDED_WORKER": "false",
        "REGULARS_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "uvicorn", "regulars.app:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    command += ["--no-access-log"]
    process = subprocess.Popen(command, env=env)
    try:
        server = Server("127.0.0.1", port, process.pid)
        _wait_until_ready(server, process)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


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
