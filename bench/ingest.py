"""Ingestion throughput: 2 client processes POST /v1/batch (100 events each) to one server.

    python -m bench.ingest [--quick] [--db sqlite|postgresql|both] [--pg-url URL]

Figures per database: events_per_s (ratio: against a raw executemany INSERT of the same event
rows into the same events table, 100 rows per transaction, one connection), peak server RSS,
and the timeline API's p50/p99 (GET /api/customers/{id}/events) on the ingested data.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import random
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from typing import TypedDict

import orjson
from sqlalchemy import func, select

from bench.common import (
    DEFAULT_PG_URL,
    Server,
    figure,
    fresh_database,
    raw_insert_rate,
    running_server,
)
from regulars.customers.models import Customer, Event
from regulars.db import Database, session_scope, set_database
from regulars.identity.models import ApiKeyScope
from regulars.identity.service import create_api_key, create_source

BENCH = "ingest"
CLIENTS = 2
BATCH = 100
FULL_EVENTS = 1_000_000
QUICK_EVENTS = 20_000
NEW_CUSTOMER_SHARE = 0.2
RAW_ROWS_MAX = 200_000
TIMELINE_CALLS = 500
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Message(TypedDict, total=False):
    type: str
    userId: str
    messageId: str
    timestamp: str
    event: str
    name: str
    properties: dict[str, object]
    traits: dict[str, object]
    context: dict[str, object]


# ---- the workload ------------------------------------------------------------------------------


def messages(worker: int, count: int) -> Iterator[Message]:
    """A deterministic mix: product views, orders with revenue, identifies, pages; ~20% new."""
    rng = random.Random(worker)
    users: list[str] = []
    for i in range(count):
        if not users or rng.random() < NEW_CUSTOMER_SHARE:
            users.append(f"w{worker}-u{len(users)}")
            user = users[-1]
        else:
            user = rng.choice(users)
        at = (T0 + timedelta(seconds=i)).isoformat()
        base: Message = {"userId": user, "messageId": f"w{worker}-m{i}", "timestamp": at}
        base["context"] = {"ip": f"10.0.{worker}.{i % 250}", "library": {"name": "bench"}}
        yield {**base, **_kind_of_message(rng, user, i)}


def _kind_of_message(rng: random.Random, user: str, i: int) -> Message:
    roll = rng.random()
    if roll < 0.5:
        sku = f"SKU-{rng.randrange(500)}"
        return {"type": "track", "event": "Product Viewed", "properties": {"sku": sku}}
    if roll < 0.6:
        revenue = round(rng.uniform(5, 300), 2)
        properties = {"order_id": f"o-{user}-{i}", "revenue": revenue, "currency": "EUR"}
        return {"type": "track", "event": "Order Completed", "properties": properties}
    if roll < 0.75:
        traits: dict[str, object] = {"email": f"{user}@example.com", "firstName": "Bench"}
        return {"type": "identify", "traits": traits}
    path = rng.choice(["/", "/shop", "/basket", "/help"])
    return {"type": "page", "name": path.strip("/") or "home", "properties": {"path": path}}


def batch_bodies(worker: int, count: int) -> list[bytes]:
    batch: list[Message] = []
    bodies: list[bytes] = []
    for message in messages(worker, count):
        batch.append(message)
        if len(batch) == BATCH:
            bodies.append(orjson.dumps({"batch": batch}))
            batch = []
    if batch:
        bodies.append(orjson.dumps({"batch": batch}))
    return bodies


# ---- the clients -------------------------------------------------------------------------------


def client(server: Server, write_key: str, worker: int, count: int, start: Barrier) -> None:
    """One client process: build its batches, wait for the others, post them one by one."""
    bodies = batch_bodies(worker, count)
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    conn = server.connection()
    start.wait()
    for body in bodies:
        conn.request("POST", "/v1/batch", body, headers)
        response = conn.getresponse()
        answer = response.read()
        if response.status != 200 or answer != b'{"success":true}':
            raise RuntimeError(f"batch refused: {response.status} {answer[:300]!r}")


def run_clients(server: Server, write_key: str, total: int) -> float:
    """Events per second over the wall time from the common start to the last answer."""
    start = multiprocessing.Barrier(CLIENTS + 1)  # released once every client has its bodies
    share = total // CLIENTS
    processes = [
        multiprocessing.Process(target=client, args=(server, write_key, w, share, start))
        for w in range(CLIENTS)
    ]
    for process in processes:
        process.start()
    start.wait()
    began = time.perf_counter()
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"a client failed with exit code {process.exitcode}")
    return share * CLIENTS / (time.perf_counter() - began)


# ---- the raw operation, and the timeline -------------------------------------------------------


def raw_rate(count: int) -> float:
    """The raw INSERT of the same event rows, BATCH per commit."""
    return raw_insert_rate(_database(), messages(CLIENTS, count), rows_per_commit=BATCH)


def timeline_latencies_ms(server: Server, api_key: str) -> list[float]:
    with session_scope(readonly=True) as session:
        ids = list(session.scalars(select(Customer.id).order_by(Customer.id)))
    rng = random.Random(7)
    headers = {"Authorization": f"Bearer {api_key}"}
    conn = server.connection()
    latencies: list[float] = []
    for customer_id in (rng.choice(ids) for _ in range(TIMELINE_CALLS)):
        began = time.perf_counter()
        conn.request("GET", f"/api/customers/{customer_id}/events?limit=50", headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append((time.perf_counter() - began) * 1000)
        if response.status != 200:
            raise RuntimeError(f"timeline answered {response.status}")
    return latencies


# ---- one database, end to end ------------------------------------------------------------------


_current: Database | None = None


def _database() -> Database:
    assert _current is not None
    return _current


def _keys() -> tuple[str, str]:
    with session_scope() as session:
        write_key = create_source(session, "bench").write_key
        _, api_key = create_api_key(session, "bench", ApiKeyScope.READ)
    return write_key, api_key


def _stored_events() -> int:
    with session_scope(readonly=True) as session:
        return session.scalar(select(func.count()).select_from(Event)) or 0


def bench_database(db: str, *, total: int, pg_url: str, workers: int) -> None:
    global _current
    url = fresh_database(db, pg_url=pg_url)
    _current = Database(url)
    set_database(_current)
    write_key, api_key = _keys()
    with running_server(url, workers=workers) as server:
        rate = run_clients(server, write_key, total)
        rss = server.peak_rss_mb()
        latencies = timeline_latencies_ms(server, api_key)
    stored = _stored_events()
    if stored != total:
        raise RuntimeError(f"{stored} events stored of {total} sent")
    raw = raw_rate(min(total, RAW_ROWS_MAX))
    ratio = round(rate / raw, 3)
    figure(BENCH, "events_per_s", db, rate, "events/s", ratio=ratio, server_workers=workers)
    figure(BENCH, "raw_insert_rows_per_s", db, raw, "rows/s")
    figure(BENCH, "server_peak_rss", db, rss, "MB")
    cuts = statistics.quantiles(latencies, n=100)
    figure(BENCH, "timeline_p50", db, cuts[49], "ms")
    figure(BENCH, "timeline_p99", db, cuts[98], "ms")
    set_database(None)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EVENTS:,} events per DB")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--events", type=int, default=None, help="override the event count")
    parser.add_argument("--workers", type=int, default=1, help="server processes (uvicorn)")
    args = parser.parse_args()
    total = args.events or (QUICK_EVENTS if args.quick else FULL_EVENTS)
    for db in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        bench_database(db, total=total, pg_url=args.pg_url, workers=args.workers)


if __name__ == "__main__":
    main()
