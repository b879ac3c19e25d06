"""What one tracked event costs on a store where everything listens: the demo store.

    python -m bench.tracked_event [--quick] [--db sqlite|postgresql|both] [--events N]
                                  [--pg-url URL]

The store is `regulars demo` without its simulated days (2,000 customers and 12 months of
history; --quick: 500 and 3): the built-in and custom segments live, every blueprint journey
published (several of them trigger on Order Completed, wait for it or count it as their
goal). Then --events (300) Order Completed events of known customers are stored one per
transaction, as `/v1/track` stores them (`customers.service.prepare` and `store`, the write
key checked in the transaction), with the clock frozen an hour after the load.

Figures per database: ms_per_event, the time per stored event (segments re-evaluated,
journeys started, goals counted, waits woken: everything in the transaction, commit
included; the worker does not run), with `ratio` against a plain INSERT of the same event
rows one per transaction (raw_insert_ms_per_event); cpu_ms_per_event, this process's CPU
time per event (on PostgreSQL the server's is not in it); statements_per_event, the
statements SQLAlchemy sent per event (the raw executemany of bulk writes not included).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event, select

from bench.common import DEFAULT_PG_URL, figure, fresh_database, raw_insert_rate
from regulars.customers.models import Identity, IdentityKind
from regulars.customers.service import prepare, store
from regulars.db import Database, session_scope, set_database
from regulars.demo import service as demo
from regulars.identity.api import authenticate
from regulars.kit import clock

BENCH = "tracked_event"
ORDER = "Order Completed"
T0 = clock.now().replace(microsecond=0) - timedelta(days=1)


def load_store(*, customers: int, months: int) -> str:
    """The demo store and its journeys, as `regulars demo --simulate-days 0` loads them;
    answers the demo source's write key."""
    with clock.frozen(T0), session_scope() as session:
        summary = demo.load(session, seed=1, customers=customers, months=months, now=T0)
        demo.install_journeys(session)
        assert summary.source is not None
        return summary.source.write_key


def buyers(count: int) -> list[str]:
    with session_scope(readonly=True) as session:
        query = (
            select(Identity.value)
            .where(Identity.kind == IdentityKind.USER_ID)
            .order_by(Identity.value)
            .limit(count)
        )
        return list(session.scalars(query))


def order(n: int, user_id: str) -> dict[str, Any]:
    product = {"product_id": f"P-{n % 40}", "category": "shoes", "price": 31.5, "quantity": 1}
    return {
        "type": "track",
        "userId": user_id,
        "event": ORDER,
        "messageId": f"bench-order-{n}",
        "properties": {
            "order_id": f"B-{n:05d}",
            "revenue": 31.5,
            "currency": "EUR",
            "products": [product],
        },
    }


def track(message: dict[str, Any], write_key: str) -> None:
    """What `/v1/track` does once the body is read: validate, then store in one transaction.
    The event happens now."""
    message["timestamp"] = clock.now().isoformat()
    batch = prepare([message], received_at=clock.now())
    with session_scope() as session:
        result = store(session, batch, source=authenticate(session, write_key))
    if result.accepted != 1:
        raise RuntimeError(f"the event was not stored: {result}")


@contextmanager
def counting_statements(database: Database) -> Iterator[list[int]]:
    counted = [0]

    def count(*_: object) -> None:
        counted[0] += 1

    event.listen(database.writer, "before_cursor_execute", count)
    try:
        yield counted
    finally:
        event.remove(database.writer, "before_cursor_execute", count)


def bench_database(db: str, *, events: int, customers: int, months: int, pg_url: str) -> None:
    database = Database(fresh_database(db, pg_url=pg_url))
    set_database(database)
    try:
        began = time.perf_counter()
        write_key = load_store(customers=customers, months=months)
        print(f"# {db}: demo store loaded in {time.perf_counter() - began:.1f} s", flush=True)
        messages = [order(n, user) for n, user in enumerate(buyers(events))]
        with clock.frozen(T0 + timedelta(hours=1)) as frozen:
            for message in messages[:10]:  # warm-up: caches, statements built once
                track(message, write_key)
            timed = messages[10:]
            with counting_statements(database) as counted:
                cpu, wall = time.process_time(), time.perf_counter()
                for message in timed:
                    frozen.advance(timedelta(seconds=1))
                    track(message, write_key)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        per_event_ms = wall * 1000 / len(timed)
        raw_ms = 1000 / raw_insert_rate(database, timed, rows_per_commit=1)
        figure(BENCH, "ms_per_event", db, per_event_ms, "ms", events=len(timed),
               ratio=round(per_event_ms / raw_ms, 2))  # fmt: skip
        figure(BENCH, "cpu_ms_per_event", db, cpu * 1000 / len(timed), "ms")
        figure(BENCH, "raw_insert_ms_per_event", db, raw_ms, "ms")
        figure(BENCH, "statements_per_event", db, counted[0] / len(timed), "statements")
    finally:
        set_database(None)
        database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tracked_event", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="500 customers, 3 months")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = parser.parse_args()
    customers, months = (500, 3) if args.quick else (2000, 12)
    for db in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        bench_database(db, events=args.events, customers=customers, months=months,
                       pg_url=args.pg_url)  # fmt: skip


if __name__ == "__main__":
    main()
