"""Segments: full compute, live re-evaluation and ingestion with live segments, on a generated
store.

    python -m bench.segments [--quick] [--db sqlite|postgresql|both] [--customers N]
                             [--events N] [--seed N] [--keep] [--pg-url URL]

The store (1,000,000 customers and 10,000,000 events; --quick: 20,000 and 200,000) is made
deterministically from --seed, with `now` fixed at 2026-11-01T12:00Z:

- customers created evenly over the two years before now, in 10 cities and their time zones
  (Berlin 15%, London 14%, New York 14%, Paris 10%, Los Angeles 10%, Tokyo 9%, Madrid 8%,
  Chicago 8%, Sao Paulo 7%, Sydney 5%), traits {"city", "tier"}, a user_id identity each;
- events spread over customers by a log-normal weight (sigma 1.0, at least 1 each), at
  uniform times between max(created, now - 365 days) and an end: now for 40% of customers,
  a uniform time before now for the others (they stopped coming);
- each customer buys with a propensity of 2%, 5%, 12% or 30% (equally likely): that share of
  their events is Order Completed ({"revenue": 5.00 to 299.99}), the rest is 60% Product
  Viewed, 15% Product Added, 10% Checkout Started ({"category": ...}) and 15% page views;
- customer_facts and customer_event_counts computed from the same events; rows are loaded
  customer by customer (a real store's events arrive in time order instead).

The rule of three conditions (Berlin, >= 2 orders in 90 days, no product view in 30 days)
then has about 4,400 members per million customers.

Figures per database (one JSON line each): the generation time; full_compute_first_s (from
empty: every member, its history row and its segment.entered event written) and
full_compute_s (a recompute with nothing changed) with `ratio` against the fastest of
hand-written SQL queries that fetch the same ids (handwritten_sql_s); live re-evaluation of
one customer with 20 dependent segments (median and p95 over 200 customers); ingestion of
50,000 track events in batches of 100 with no segment and with 20 live segments, `ratio`
the second rate over the first, beside SQLite's checkpointer thread as in `regulars serve`.
On PostgreSQL, segment_members is analyzed after the 20 computes, as autovacuum would
within a minute: until then, members leaving a segment (segment_id = ? AND customer_id =
ANY(...)) are looked for among every member of it. The live path's read of memberships no
longer depends on it (by customer only since 2026-12-01: 3,680 events/s without the
ANALYZE, 3,564 with it, one run each).

--keep keeps the generated database (/tmp/regulars-bench-segments/ for SQLite, a database
named after the size for PostgreSQL) and runs on a copy of it, so later runs skip the load.
"""

from __future__ import annotations

import argparse
import bisect
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from sqlalchemy import bindparam, text
from sqlalchemy.engine import make_url

from bench.common import figure, fresh_database
from regulars.config import get_settings
from regulars.customers import service as customers
from regulars.customers.changes import CustomerChange
from regulars.db import Database, SQLiteCheckpointer, UTCDateTime, session_scope, set_database
from regulars.kit import clock, runtime
from regulars.migrate import upgrade
from regulars.segments import service
from regulars.segments.schemas import ComputeResult, SegmentCreate

BENCH = "segments"
NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
FULL = (1_000_000, 10_000_000)
QUICK = (20_000, 200_000)
PG_URL = "postgresql://postgres@127.0.0.1:5432/regulars_bench_segments"
KEEP_DIR = Path(tempfile.gettempdir()) / "regulars-bench-segments"
SOURCE = "bench-gen"
CHUNK = 10_000  # customers per load transaction

# ---- the store: distributions (documented in the module docstring) ---------------------------

DAY = 86_400
NOW_S = int(NOW.timestamp())
CITIES = (("Berlin", "Europe/Berlin", 15), ("London", "Europe/London", 14),
          ("New York", "America/New_York", 14), ("Paris", "Europe/Paris", 10),
          ("Los Angeles", "America/Los_Angeles", 10), ("Tokyo", "Asia/Tokyo", 9),
          ("Madrid", "Europe/Madrid", 8), ("Chicago", "America/Chicago", 8),
          ("Sao Paulo", "America/Sao_Paulo", 7), ("Sydney", "Australia/Sydney", 5))  # fmt: skip
CITY_CUTS = list(accumulate(weight / 100 for *_, weight in CITIES))
TIERS = ("free", "plus", "pro")
SIGMA = 1.0
ACTIVE_SHARE = 0.4
BUYER_SHARES = (0.02, 0.05, 0.12, 0.3)
BROWSE = (("track", "Product Viewed", 0.60), ("track", "Product Added", 0.15),
          ("track", "Checkout Started", 0.10), ("page", "Shop", 0.15))  # fmt: skip
BROWSE_CUTS = list(accumulate(share for *_, share in BROWSE))
CATEGORIES = ("shoes", "shirts", "bags", "hats", "coats", "socks")
ORDER = "Order Completed"

TABLES = {
    "customers": ("id", "email", "timezone", "traits", "traits_updated_at", "created_at",
                  "updated_at"),
    "customer_identities": ("kind", "value", "customer_id", "created_at"),
    "customer_facts": ("customer_id", "events_count", "orders_count", "revenue_total_cents",
                       "refunds_count", "refunded_total_cents", "first_order_at",
                       "last_order_at", "first_seen_at", "last_seen_at"),
    "customer_event_counts": ("customer_id", "event_name", "count", "last_at"),
    "events": ("customer_id", "source", "message_id", "type", "name", "properties", "context",
               "timestamp", "received_at"),
}  # fmt: skip

Row = tuple[str | int | None, ...]


@dataclass(frozen=True)
class Size:
    customers: int
    events: int
    seed: int

    @property
    def label(self) -> str:
        return f"{self.customers}c_{self.events}e_s{self.seed}"


@dataclass
class Chunk:
    """The rows of a run of customers, per table, in TABLES' column order."""

    rows: dict[str, list[Row]] = field(default_factory=lambda: {name: [] for name in TABLES})


_HMS = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.000000" for s in range(DAY)]
_days: dict[int, str] = {}


def stamp(seconds: int) -> str:
    """UTC seconds as the text both databases read ('YYYY-MM-DD HH:MM:SS.ffffff', UTC)."""
    day, rest = divmod(seconds, DAY)
    if day not in _days:
        _days[day] = datetime.fromtimestamp(day * DAY, UTC).strftime("%Y-%m-%d ")
    return _days[day] + _HMS[rest]


def ulid(millis: int, serial: int) -> str:
    """A ULID-shaped id, increasing with `serial` (so rows load in index order)."""
    value = (millis << 80) | serial
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return "".join(alphabet[(value >> shift) & 31] for shift in range(125, -1, -5))


def event_counts(size: Size, rng: random.Random) -> list[int]:
    """Events per customer: at least one, the rest by a log-normal weight; sums to size.events."""
    weights = [rng.lognormvariate(0, SIGMA) for _ in range(size.customers)]
    spare = size.events - size.customers
    scale = spare / sum(weights)
    counts = [1 + int(weight * scale) for weight in weights]
    for index in rng.sample(range(size.customers), size.events - sum(counts)):
        counts[index] += 1
    return counts


def generate(size: Size) -> Iterator[Chunk]:
    """The store, CHUNK customers at a time, in id order; deterministic for a size."""
    if size.events < size.customers:
        raise SystemExit("--events must be at least --customers")
    rng = random.Random(size.seed)
    counts = event_counts(size, rng)
    tracked = frozenset(get_settings().tracked_events)
    chunk = Chunk()
    for index, count in enumerate(counts):
        created = created_at(index, size)
        owner = customer_id(index, size)
        _add_customer(chunk, rng, index, owner, created)
        _add_events(chunk, rng, owner, index, count, created, tracked)
        if len(chunk.rows["customers"]) == CHUNK:
            yield chunk
            chunk = Chunk()
    if chunk.rows["customers"]:
        yield chunk


def created_at(index: int, size: Size) -> int:
    """Customers join evenly over the two years before now, up to a week ago."""
    return NOW_S - 730 * DAY + int(index * 723 * DAY / size.customers)


def customer_id(index: int, size: Size) -> str:
    return ulid(created_at(index, size) * 1000, index)


def _add_customer(chunk: Chunk, rng: random.Random, index: int, owner: str, at: int) -> None:
    city, zone, _ = CITIES[bisect.bisect(CITY_CUTS, rng.random() * CITY_CUTS[-1])]
    traits = f'{{"city":"{city}","tier":"{TIERS[index % 3]}"}}'
    created = stamp(at)
    chunk.rows["customers"].append(
        (owner, f"c{index}@example.com", zone, traits, created, created, created)
    )
    chunk.rows["customer_identities"].append(("user_id", user_id(index), owner, created))


def user_id(index: int) -> str:
    return f"u{index:08d}"


def _add_events(
    chunk: Chunk,
    rng: random.Random,
    owner: str,
    index: int,
    count: int,
    created: int,
    tracked: frozenset[str],
) -> None:
    start = max(created, NOW_S - 365 * DAY)
    end = NOW_S if rng.random() < ACTIVE_SHARE else start + int((NOW_S - start) * rng.random())
    buys = rng.choice(BUYER_SHARES)
    times = sorted(start + int((end - start) * rng.random()) for _ in range(count))
    events = chunk.rows["events"]
    orders = revenue = 0
    first_order: str | None = None
    last_order: str | None = None
    seen: dict[str, tuple[int, str]] = {}
    for serial, at in enumerate(times):
        when = stamp(at)
        roll = rng.random()
        if roll < buys:
            kind, name = "track", ORDER
            cents = 500 + int(29_500 * roll / buys)
            properties = f'{{"revenue":{cents // 100}.{cents % 100:02d}}}'
            orders += 1
            revenue += cents
            first_order = first_order or when
            last_order = when
        else:
            share = (roll - buys) / (1 - buys)
            kind, name, _ = BROWSE[min(bisect.bisect(BROWSE_CUTS, share), len(BROWSE) - 1)]
            path = '{"path":"/shop"}'
            properties = path if kind == "page" else _category(share)
        message_id = f"{index:08d}-{serial:06d}"
        events.append((owner, SOURCE, message_id, kind, name, properties, "{}", when, when))
        if kind == "track" and name in tracked:
            seen[name] = (seen.get(name, (0, ""))[0] + 1, when)
    chunk.rows["customer_facts"].append(
        (owner, count, orders, revenue, 0, 0, first_order, last_order,
         stamp(times[0]), stamp(times[-1]))
    )  # fmt: skip
    chunk.rows["customer_event_counts"].extend(
        (owner, name, seen_count, last_at) for name, (seen_count, last_at) in seen.items()
    )


def _category(share: float) -> str:
    return f'{{"category":"{CATEGORIES[int(share * 1_000_003) % len(CATEGORIES)]}"}}'


# ---- loading it --------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[segments] {message}", file=sys.stderr, flush=True)


def load(url: str, size: Size) -> None:
    """Write the store into a migrated, empty database. Only the load skips foreign key checks
    and durability (SQLite: synchronous=OFF, no journal; PostgreSQL: COPY as replica role)."""
    sqlite = url.startswith("sqlite")
    step = max(1, size.customers // CHUNK // 10)
    writer = _sqlite_writer(str(make_url(url).database)) if sqlite else _postgresql_writer(url)
    with writer as write:
        for done, chunk in enumerate(generate(size), 1):
            write(chunk)
            if done % step == 0:
                log(f"loaded {done * CHUNK:,} of {size.customers:,} customers")
    if not sqlite:
        with psycopg.connect(url, autocommit=True) as conn:
            log("VACUUM ANALYZE")
            conn.execute("VACUUM ANALYZE")


@contextmanager
def _sqlite_writer(path: str) -> Iterator[Callable[[Chunk], None]]:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in (
        "journal_mode=OFF",
        "synchronous=OFF",
        "foreign_keys=OFF",
        "cache_size=-1048576",
    ):
        conn.execute(f"PRAGMA {pragma}")
    statements = {
        table: f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({','.join('?' * len(columns))})"
        for table, columns in TABLES.items()
    }

    def write(chunk: Chunk) -> None:
        conn.execute("BEGIN")
        for table, rows in chunk.rows.items():
            conn.executemany(statements[table], rows)
        conn.execute("COMMIT")

    try:
        yield write
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


@contextmanager
def _postgresql_writer(url: str) -> Iterator[Callable[[Chunk], None]]:
    with psycopg.connect(url) as conn:
        conn.execute("SET session_replication_role = replica")  # no foreign key triggers
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET TimeZone = 'UTC'")

        def write(chunk: Chunk) -> None:
            with conn.cursor() as cursor:
                for table, rows in chunk.rows.items():
                    with cursor.copy(
                        f"COPY {table} ({', '.join(TABLES[table])}) FROM STDIN"
                    ) as copy:
                        copy.write("".join(map(_copy_line, rows)))
            conn.commit()

        yield write


def _copy_line(row: Row) -> str:
    """A row in COPY's text format (the generated values hold no tab, newline or backslash)."""
    return "\t".join("\\N" if value is None else str(value) for value in row) + "\n"


def prepare_store(db: str, size: Size, *, keep: bool, pg_url: str) -> str:
    """The URL of a migrated database holding the store: generated now, or with --keep a copy
    of the one generated by an earlier run."""
    kept_sqlite = KEEP_DIR / f"{size.label}.db"
    kept_pg = make_url(pg_url).set(database=f"regulars_bench_seg_{size.label}")
    if keep and (kept_sqlite.exists() if db == "sqlite" else _pg_exists(pg_url, kept_pg.database)):
        return _copy_of_kept(db, kept_sqlite, str(kept_pg.database), pg_url=pg_url)
    target = f"{kept_pg.database}_partial" if keep and db == "postgresql" else None
    url = fresh_database(db, pg_url=_render(kept_pg.set(database=target)) if target else pg_url)
    began = time.perf_counter()
    log(f"{db}: generating {size.customers:,} customers and {size.events:,} events")
    load(url, size)
    elapsed = time.perf_counter() - began
    figure(BENCH, "generate_s", db, elapsed, "s", customers=size.customers, events=size.events)
    if keep and db == "sqlite":
        KEEP_DIR.mkdir(exist_ok=True)
        shutil.copyfile(str(make_url(url).database), kept_sqlite.with_suffix(".partial"))
        kept_sqlite.with_suffix(".partial").rename(kept_sqlite)
    elif target:
        _pg_admin(pg_url, f'ALTER DATABASE "{target}" RENAME TO "{kept_pg.database}"')
        return _copy_of_kept(db, kept_sqlite, str(kept_pg.database), pg_url=pg_url)
    return url


def _copy_of_kept(db: str, kept_sqlite: Path, kept_pg: str, *, pg_url: str) -> str:
    began = time.perf_counter()
    if db == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="regulars-bench-")) / "bench.db"
        shutil.copyfile(kept_sqlite, path)
        url = f"sqlite:///{path}"
    else:
        url, work = pg_url, make_url(pg_url).database
        _pg_admin(pg_url, f'DROP DATABASE IF EXISTS "{work}" WITH (FORCE)')
        _pg_admin(pg_url, f'CREATE DATABASE "{work}" TEMPLATE "{kept_pg}" STRATEGY FILE_COPY')
    upgrade(url)
    log(f"{db}: copied the kept store in {time.perf_counter() - began:.1f} s")
    return url


def _render(url: Any) -> str:
    rendered: str = url.render_as_string(hide_password=False)
    return rendered


def _pg_admin(pg_url: str, sql: str) -> list[tuple[Any, ...]]:
    admin = _render(make_url(pg_url).set(database="postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


def _pg_exists(pg_url: str, name: str | None) -> bool:
    return bool(_pg_admin(pg_url, f"SELECT 1 FROM pg_database WHERE datname = '{name}'"))


def drop_store(url: str) -> None:
    """Remove a SQLite work file (never the kept store); PostgreSQL's is dropped next run."""
    if url.startswith("sqlite"):
        directory = Path(str(make_url(url).database)).parent
        if directory != KEEP_DIR and directory.name.startswith("regulars-bench-"):
            shutil.rmtree(directory)


# ---- the rule, and the SQL one would write by hand for it ------------------------------------

CITY = "Berlin"
RULE: dict[str, Any] = {
    "type": "and",
    "rules": [
        {"type": "profile", "field": "traits.city", "op": "equals", "value": CITY},
        {"type": "event", "name": ORDER, "op": "gte", "value": 2,
         "window": {"last": {"amount": 90, "unit": "days"}}},
        {"type": "not", "rule": {"type": "event", "name": "Product Viewed",
                                 "window": {"last": {"amount": 30, "unit": "days"}}}},
    ],
}  # fmt: skip


def handwritten_queries(db: str) -> dict[str, str]:
    """Three ways to fetch the rule's ids; the fastest is the yardstick."""
    city = "json_extract(c.traits, '$.city')" if db == "sqlite" else "c.traits ->> 'city'"
    viewed = """SELECT 1 FROM events v WHERE v.name = 'Product Viewed'
                AND v.customer_id = {owner} AND v.timestamp >= :since30"""
    return {
        "group_by_intersect_except": f"""
            SELECT customer_id FROM events
             WHERE name = 'Order Completed' AND timestamp >= :since90
             GROUP BY customer_id HAVING count(*) >= 2
            INTERSECT
            SELECT c.id FROM customers c WHERE {city} = :city
            EXCEPT
            SELECT customer_id FROM events WHERE name = 'Product Viewed' AND timestamp >= :since30
        """,
        "per_customer_subqueries": f"""
            SELECT c.id FROM customers c
             WHERE {city} = :city
               AND (SELECT count(*) FROM events o WHERE o.name = 'Order Completed'
                     AND o.customer_id = c.id AND o.timestamp >= :since90) >= 2
               AND NOT EXISTS ({viewed.format(owner="c.id")})
        """,
        "join_group_by_not_exists": f"""
            SELECT o.customer_id FROM events o JOIN customers c ON c.id = o.customer_id
             WHERE o.name = 'Order Completed' AND o.timestamp >= :since90 AND {city} = :city
               AND NOT EXISTS ({viewed.format(owner="o.customer_id")})
             GROUP BY o.customer_id HAVING count(*) >= 2
        """,
    }


def handwritten(db: str) -> tuple[float, str, set[str]]:
    """(seconds, query name, ids) of the fastest hand-written query, best of 3 runs each."""
    params = {
        "city": CITY,
        "since90": NOW - timedelta(days=90),
        "since30": NOW - timedelta(days=30),
    }
    timings: dict[str, float] = {}
    found: dict[str, set[str]] = {}
    for name, sql in handwritten_queries(db).items():
        statement = text(sql).bindparams(
            bindparam("since90", type_=UTCDateTime()), bindparam("since30", type_=UTCDateTime())
        )
        for _ in range(3):
            with session_scope() as session:
                began = time.perf_counter()
                ids = set(session.execute(statement, params).scalars())
                timings[name] = min(timings.get(name, 1e9), time.perf_counter() - began)
            found[name] = ids
        log(f"hand-written {name}: {timings[name]:.3f} s, {len(ids):,} ids")
    if len({frozenset(ids) for ids in found.values()}) != 1:
        raise RuntimeError("the hand-written queries disagree")
    best = min(timings, key=timings.__getitem__)
    return timings[best], best, found[best]


# ---- the segments service ----------------------------------------------------------------------

KEY = "berlin-lapsed-buyers"
LIVE_SEGMENTS = 20
LIVE_CUSTOMERS = 200
INGEST_EVENTS = 50_000
INGEST_BATCH = 100
T = TypeVar("T")


def timed(work: Callable[[], T]) -> tuple[float, T]:
    """Seconds and answer of one unit of work, commit included."""
    began = time.perf_counter()
    answer = work()
    return time.perf_counter() - began, answer


def _compute(key: str) -> ComputeResult:
    with session_scope() as session:
        return service.compute(session, key, now=NOW)


def _create(key: str, rule: dict[str, Any]) -> None:
    with session_scope() as session:
        service.create(session, SegmentCreate(key=key, name=key, rule=rule))


def _members(key: str) -> set[str]:
    sql = "SELECT customer_id FROM segment_members m JOIN segments s ON s.id = m.segment_id"
    with session_scope(readonly=True) as session:
        return set(session.scalars(text(f"{sql} WHERE s.key = :key"), {"key": key}))


def compute_figures(db: str) -> None:
    """First compute and recompute of the rule, against the fastest hand-written query."""
    hand, query, ids = handwritten(db)
    figure(BENCH, "handwritten_sql_s", db, hand, "s", query=query, members=len(ids))
    _create(KEY, RULE)
    first, result = timed(lambda: _compute(KEY))
    if _members(KEY) != ids:
        raise RuntimeError(f"{result.members} members computed, {len(ids)} by hand")
    extra = {"members": result.members}
    figure(BENCH, "full_compute_first_s", db, first, "s", ratio=round(first / hand, 2), **extra)
    again = min(timed(lambda: _compute(KEY))[0] for _ in range(3))
    figure(BENCH, "full_compute_s", db, again, "s", ratio=round(again / hand, 2), **extra)
    with session_scope() as session:
        service.delete(session, KEY)


def live_rules() -> list[dict[str, Any]]:
    """20 rules that all read Order Completed: thresholds and windows vary, half also ask
    for a city, a quarter also for no product view in 30 days."""
    rules = []
    for n in range(LIVE_SEGMENTS):
        days = (7, 30, 90, 180, 365)[n % 5]
        window = {"last": {"amount": days, "unit": "days"}}
        orders = {
            "type": "event",
            "name": ORDER,
            "op": "gte",
            "value": 1 + n // 5,
            "window": window,
        }
        more: list[dict[str, Any]] = []
        if n % 2:
            more.append({"type": "profile", "field": "traits.city", "op": "equals",
                         "value": CITIES[n % len(CITIES)][0]})  # fmt: skip
        if n % 4 == 3:
            more.append(RULE["rules"][2])
        rules.append({"type": "and", "rules": [orders, *more]} if more else orders)
    return rules


def live_figures(db: str, size: Size) -> None:
    began = time.perf_counter()
    for n, rule in enumerate(live_rules()):
        _create(f"live-{n:02d}", rule)
        seconds, result = timed(lambda: _compute(f"live-{n:02d}"))  # noqa: B023 (called here)
        log(f"live-{n:02d}: {result.members:,} members, computed in {seconds:.2f} s")
    log(f"{LIVE_SEGMENTS} live segments computed in {time.perf_counter() - began:.1f} s")
    if db == "postgresql":  # what autovacuum does within a minute of the computes
        with session_scope() as session:
            session.execute(text("ANALYZE segment_members"))
    rng = random.Random(size.seed + 1)
    latencies: list[float] = []
    for index in rng.sample(range(size.customers), LIVE_CUSTOMERS):
        changes = {customer_id(index, size): CustomerChange(event_names={ORDER}, facts=True)}
        with session_scope() as session:
            began = time.perf_counter()
            service.reevaluate(session, changes)
            latencies.append((time.perf_counter() - began) * 1000)
    cuts = statistics.quantiles(latencies, n=100)
    extra = {"segments": LIVE_SEGMENTS, "customers": LIVE_CUSTOMERS}
    figure(BENCH, "live_reevaluate_p50_ms", db, cuts[49], "ms", **extra)
    figure(BENCH, "live_reevaluate_p95_ms", db, cuts[94], "ms", **extra)


def ingest_messages(size: Size, run: str, count: int) -> list[list[dict[str, Any]]]:
    """Track events of existing customers in the hour before now: half orders, half views."""
    rng = random.Random(f"{size.seed}-{run}")
    messages = []
    for n in range(count):
        at = NOW - timedelta(seconds=(count - n) * 3600 / count)
        user = user_id(rng.randrange(size.customers))
        message: dict[str, Any] = {"type": "track", "userId": user, "messageId": f"bench-{run}-{n}"}
        message["timestamp"] = at.isoformat()
        if n % 2:
            message |= {"event": ORDER, "properties": {"revenue": 42.5}}
        else:
            message |= {"event": "Product Viewed", "properties": {"category": "shoes"}}
        messages.append(message)
    return [messages[n : n + INGEST_BATCH] for n in range(0, count, INGEST_BATCH)]


def ingest_rate(size: Size, run: str, count: int = INGEST_EVENTS) -> float:
    """Events per second of customers.service.ingest, one transaction per batch."""
    batches = ingest_messages(size, run, count)
    began = time.perf_counter()
    for batch in batches:
        with session_scope() as session:
            result = customers.ingest(session, batch, source="bench")
        if result.accepted != len(batch):
            raise RuntimeError(f"ingest accepted {result.accepted} of {len(batch)}")
    return count / (time.perf_counter() - began)


# ---- one database, end to end ------------------------------------------------------------------


@contextmanager
def running_clock(start: datetime) -> Iterator[None]:
    """Time that runs from `start` at the wall clock's pace, as a server's does. Ids made later
    sort later (ULIDs), so the keys of the segment.entered events the live path writes land
    at the end of their index; under a frozen clock every id of the run shared a millisecond
    and landed at random in it: a fifth more pages written per batch (docs/benchmarks.md)."""
    clock.set_clock(clock.ShiftedClock(start - datetime.now(UTC)))
    try:
        yield
    finally:
        clock.reset_clock()


def bench_database(db: str, size: Size, *, keep: bool, pg_url: str) -> None:
    url = prepare_store(db, size, keep=keep, pg_url=pg_url)
    database = Database(url)
    set_database(database)
    runtime.settle_heap()  # what follows stands for a server process, settled once started
    try:
        with clock.frozen(NOW):
            compute_figures(db)
        # As in `regulars serve`: the checkpointer thread folds SQLite's log beside the
        # writer. Without it, the commit that finds 100,000 pages in the log folds them
        # itself, holding the write lock, once or twice in a run of this length.
        with running_clock(NOW), SQLiteCheckpointer(database):
            ingest_rate(size, "warm-up", 1000)
            alone = ingest_rate(size, "alone")
            figure(BENCH, "ingest_events_per_s", db, alone, "events/s", segments=0)
            live_figures(db, size)
            live = ingest_rate(size, "live")
            figure(BENCH, "ingest_events_per_s", db, live, "events/s",
                   segments=LIVE_SEGMENTS, ratio=round(live / alone, 3))  # fmt: skip
    finally:
        set_database(None)
    drop_store(url)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.segments", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20,000 customers, 200,000 events")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the store, run on a copy")
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args()
    customers, events = QUICK if args.quick else FULL
    size = Size(args.customers or customers, args.events or events, args.seed)
    for db in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        bench_database(db, size, keep=args.keep, pg_url=args.pg_url)


if __name__ == "__main__":
    main()
