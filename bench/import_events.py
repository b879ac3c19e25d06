"""`regulars import events` throughput: a JSONL export of a shop, imported end to end.

    python -m bench.import_events [--quick] [--db sqlite|postgresql|both] [--pg-url URL]
                                  [--chunk-size N]

The file (1M lines; --quick: 50k) is made deterministically in /tmp: 50,000 people, their
page views, product views, carts, orders and identifies interleaved in time order as an
export would be. Figure per database: events_per_s of `import_file` (read, parse, validate,
resolve identities, store, facts; --chunk-size rows per transaction, the importer's default
unless given), with `ratio` against a raw executemany INSERT of the same event rows into the
events table, as many rows per transaction.
"""

from __future__ import annotations

import argparse
import itertools
import random
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.common import figure, fresh_database, raw_insert_rate
from regulars.customers.importer import CHUNK, ImportKind, import_file
from regulars.db import Database, set_database
from regulars.kit import clock, runtime

BENCH = "import"
FULL_LINES = 1_000_000
QUICK_LINES = 50_000
PEOPLE = 50_000
RAW_ROWS_MAX = 200_000
PG_URL = "postgresql://postgres@127.0.0.1:5432/regulars_bench_import"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
EVENTS = (("Product Viewed", 60), ("Product Added", 15), ("Checkout Started", 6),
          ("Order Completed", 4), ("Order Refunded", 1))  # fmt: skip


def lines(count: int, *, seed: int = 1) -> Iterator[dict[str, Any]]:
    """`count` Segment messages in time order; deterministic for a seed."""
    rng = random.Random(seed)
    names = [name for name, _ in EVENTS]
    weights = [weight for _, weight in EVENTS]
    step = timedelta(days=365) / count
    for n in range(count):
        person = rng.randrange(PEOPLE)
        message: dict[str, Any] = {"messageId": f"bench-{seed}-{n}", "anonymousId": f"a{person}"}
        if person % 10:
            message["userId"] = f"u{person}"
        message["timestamp"] = (T0 + step * n).isoformat().replace("+00:00", "Z")
        roll = rng.random()
        if roll < 0.04 and "userId" in message:
            message |= {"type": "identify", "traits": {"email": f"p{person}@example.com"}}
        elif roll < 0.24:
            message |= {"type": "page", "name": "Shop", "properties": {"path": "/shop"}}
        else:
            event = rng.choices(names, weights)[0]
            price = rng.randrange(500, 15_000) / 100
            properties = {"sku": f"SKU-{rng.randrange(200)}", "price": price, "currency": "USD"}
            if event.startswith("Order"):
                properties |= {"order_id": f"o{n}", "revenue": price}
            message |= {"type": "track", "event": event, "properties": properties}
        yield message


def write_file(count: int) -> Path:
    path = Path(tempfile.gettempdir()) / f"regulars-bench-import-{count}.jsonl"
    if not path.exists():
        partial = path.with_suffix(".partial")
        with partial.open("wb") as out:
            for message in lines(count):
                out.write(orjson.dumps(message) + b"\n")
        partial.rename(path)
    return path


def import_rate(path: Path, count: int, *, chunk_size: int) -> float:
    runtime.settle_heap()  # as `regulars import` does before its first row
    began = time.perf_counter()
    summary = import_file(path, kind=ImportKind.EVENTS, source="bench", chunk_size=chunk_size)
    elapsed = time.perf_counter() - began
    assert summary.imported == count, f"imported {summary.imported} of {count}"
    return count / elapsed


def raw_rate(database: Database, path: Path, count: int, *, chunk_size: int) -> float:
    with path.open("rb") as stream:
        lines = itertools.islice(stream, min(count, RAW_ROWS_MAX))
        messages = [orjson.loads(line) for line in lines]
    return raw_insert_rate(database, messages, rows_per_commit=chunk_size)


def run(db: str, *, path: Path, count: int, pg_url: str, chunk_size: int) -> None:
    url = fresh_database(db, pg_url=pg_url)
    database = Database(url)
    set_database(database)
    try:
        with clock.frozen(T0 + timedelta(days=366)):
            rate = import_rate(path, count, chunk_size=chunk_size)
        raw = raw_rate(database, path, count, chunk_size=chunk_size)
    finally:
        set_database(None)
    figure(BENCH, "events_per_s", db, rate, "events/s", ratio=round(rate / raw, 3),
           chunk_size=chunk_size)  # fmt: skip
    figure(BENCH, "raw_insert_per_s", db, raw, "rows/s", rows_per_commit=chunk_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_LINES:,} lines")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--chunk-size", type=int, default=CHUNK, help="rows per transaction")
    args = parser.parse_args()
    count = QUICK_LINES if args.quick else FULL_LINES
    path = write_file(count)
    for db in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
        run(db, path=path, count=count, pg_url=args.pg_url, chunk_size=args.chunk_size)


if __name__ == "__main__":
    main()
