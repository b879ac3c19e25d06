"""Dashboard: how long each staff page takes to answer on a store of a million customers.

    python -m bench.dashboard [--quick] [--db sqlite|postgresql|both] [--customers N]
                              [--events N] [--requests N] [--seed N] [--keep] [--pg-url URL]

The store is bench/segments.py's (1,000,000 customers and 10,000,000 events; --quick 20,000
and 200,000; made by its generator from --seed, `now` fixed at 2026-11-01T12:00Z), and on
top of it what the pages show:

- names and phones: each customer gets a first and a last name (one of 24 and one of 48,
  spread by their index) and three customers in four a mobile number +4915NNNNNNNN;
- RFM scores refreshed and the built-in segments (lifecycle stages, RFM groups) created and
  computed, as `regulars segments compute --all` does (each member's history row and
  segment.entered event written);
- the demo store's message templates and 3,000 order confirmations (--quick 500: one per 40
  customers up to 3,000), email to the oldest customers, delivered through the sandbox
  provider (so the outbox holds them);
- the win-back journey installed from its blueprint and published (after the computes, so
  nobody is enrolled).

A staff user with role owner signs a `TestClient(create_app(with_worker=False))` in through
the real login form. The pages: / (twice: its figures read from the stored snapshot, and
with the snapshot deleted before each request, so the request computes and stores it),
/customers, three searches (/customers?q= a last-name
prefix, an email, a phone prefix), the profile of the customer with the most events, its
timeline's second page (at the cursor in the hx-get the profile hands htmx), /segments, the
largest segment, /messages/templates, /messages/deliveries, /messages/outbox, /journeys,
/journeys/win-back and /settings. Each is requested once to warm up, then --requests (20)
times, each timed with perf_counter around `client.get`: the server's time plus the
in-process transport, no network.

One JSON line per page: figure page_ms (search_ms for the searches), value the median, p95,
target 300 ms (searches 100 ms), and where the page wraps an obvious raw operation, `ratio`
= median / raw_ms, that operation's median run directly with the database driver (sqlite3,
psycopg) as many times: the bare indexed lookup of the same customers for a search, the bare
SELECT of 50 timeline events for the profile and the timeline page, the first 50 rows for a
list. A page answering 404 is a line with value null and note "missing"; any other answer
but 200 (a 5xx) goes to stderr with the page's text and counts as a failure in the last line
(figure summary). The generation and the extras are timed too (generate_s, setup_s).

--keep keeps the store with its extras (/tmp/regulars-bench-dashboard/ for SQLite, a
database named after the size for PostgreSQL) and later runs use it in place: they only add
the staff user (once) and its sign-ins, and migrate it to the newest revision (a migration
edited in place after the store was made is not applied again: delete the store then).
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.common import figure, fresh_database
from bench.segments import NOW, Size, _pg_admin, _pg_exists, _render, load
from regulars.analytics import service as analytics
from regulars.app import create_app
from regulars.customers import service as customers
from regulars.db import Database, session_scope, set_database
from regulars.demo.messages import TEMPLATES
from regulars.errors import NotFound
from regulars.identity import staff
from regulars.identity.models import Role
from regulars.journeys import service as journeys
from regulars.kit import clock
from regulars.messages import service as messages
from regulars.messages.models import MessageChannel
from regulars.migrate import upgrade
from regulars.segments import service as segments

BENCH = "dashboard"
FULL = (1_000_000, 10_000_000)
QUICK = (20_000, 200_000)
PG_URL = "postgresql://postgres@127.0.0.1:5432/regulars_bench_dashboard"
KEEP_DIR = Path(tempfile.gettempdir()) / "regulars-bench-dashboard"
PAGE_TARGET_MS = 300
SEARCH_TARGET_MS = 100
DELIVERIES = 3_000  # at most; one per 40 customers below 120,000
JOURNEY = "win-back"
EMAIL = "owner@bench.example"
PASSWORD = "correct horse battery"

FIRST = ("Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas",
         "Kenji", "Lena", "Marco", "Nora", "Oscar", "Paula", "Quinn", "Rosa", "Sam", "Tara",
         "Ugo", "Vera", "Will", "Yuki")  # fmt: skip
LAST = ("Müller", "Smith", "Schmidt", "Jones", "Martin", "Bernard", "Garcia", "Lopez", "Sato",
        "Suzuki", "Miller", "Brown", "Wilson", "Taylor", "Davies", "Evans", "Dubois", "Moreau",
        "Fernandez", "Gonzalez", "Silva", "Santos", "Oliveira", "Costa", "Williams", "Johnson",
        "Weber", "Wagner", "Becker", "Hoffmann", "Schulz", "Koch", "Richter", "Klein", "Wolf",
        "Tanaka", "Watanabe", "Ito", "Nakamura", "Kobayashi", "Rossi", "Russo", "Ferrari",
        "Nguyen", "Kim", "Lee", "Thompson", "Walker")  # fmt: skip
SEARCH_NAME = "Mil"  # Miller: one customer in 48


def log(message: str) -> None:
    print(f"[dashboard] {message}", file=sys.stderr, flush=True)


def line(db: str, name: str, value: float | None, unit: str, **extra: object) -> None:
    """A figure line that may have no value (a missing page); `figure` otherwise."""
    if value is not None:
        figure(BENCH, name, db, value, unit, **extra)
        return
    fields = {"bench": BENCH, "figure": name, "db": db, "value": None, "unit": unit, **extra}
    print(orjson.dumps(fields).decode(), flush=True)


# ---- the store ---------------------------------------------------------------------------------


def prepare_store(db: str, size: Size, *, keep: bool, pg_url: str) -> str:
    """The URL of a database holding the store and its extras: with --keep the one an
    earlier run kept, or one generated now (under a temporary name, renamed when complete)."""
    kept_sqlite = KEEP_DIR / f"{size.label}.db"
    kept_pg = f"regulars_bench_dash_{size.label}"
    kept_url = (
        f"sqlite:///{kept_sqlite}"
        if db == "sqlite"
        else _render(make_url(pg_url).set(database=kept_pg))
    )
    if keep and (kept_sqlite.exists() if db == "sqlite" else _pg_exists(pg_url, kept_pg)):
        upgrade(kept_url)
        log(f"{db}: using the kept store {make_url(kept_url).database}")
        return kept_url
    partial = kept_sqlite.with_suffix(".partial")
    if keep and db == "sqlite":
        KEEP_DIR.mkdir(exist_ok=True)
        partial.unlink(missing_ok=True)
        upgrade(url := f"sqlite:///{partial}")
    else:
        target = _render(make_url(pg_url).set(database=f"{kept_pg}_partial")) if keep else pg_url
        url = fresh_database(db, pg_url=target)
    build_store(db, url, size)
    if not keep:
        return url
    if db == "sqlite":
        with closing(sqlite3.connect(partial)) as conn:  # all in the file before it moves
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        partial.rename(kept_sqlite)
        for leftover in KEEP_DIR.glob(f"{partial.name}*"):  # the empty WAL, the lock file
            leftover.unlink()
    else:
        _pg_admin(pg_url, f'ALTER DATABASE "{kept_pg}_partial" RENAME TO "{kept_pg}"')
    return kept_url


def build_store(db: str, url: str, size: Size) -> None:
    log(f"{db}: generating {size.customers:,} customers and {size.events:,} events")
    began = time.perf_counter()
    load(url, size)
    figure(BENCH, "generate_s", db, time.perf_counter() - began, "s",
           customers=size.customers, events=size.events)  # fmt: skip
    began = time.perf_counter()
    set_database(Database(url))
    try:
        add_extras(db, size)
    finally:
        set_database(None)
    figure(BENCH, "setup_s", db, time.perf_counter() - began, "s")


def add_extras(db: str, size: Size) -> None:
    """Names and phones, the built-in segments, deliveries and a journey (docstring)."""
    with clock.frozen(NOW):
        step(db, "names and phones", lambda: add_names(db))
        step(db, "built-in segments", compute_segments)
        count = min(DELIVERIES, size.customers // 40)
        step(db, f"{count:,} deliveries", lambda: send_confirmations(count))
        step(db, f"the {JOURNEY} journey", install_journey)


def step(db: str, what: str, work: Callable[[], object]) -> None:
    began = time.perf_counter()
    work()
    log(f"{db}: {what} in {time.perf_counter() - began:.1f} s")


def add_names(db: str) -> None:
    index = "CAST(substr(email, 2, length(email) - 13) AS INTEGER)"  # c<index>@example.com
    digits = f"CAST({index} AS TEXT)"
    padded = (
        f"substr('00000000' || {digits}, -8)"
        if db == "sqlite"
        else f"right('00000000' || {digits}, 8)"
    )
    first = " ".join(f"WHEN {n} THEN '{name}'" for n, name in enumerate(FIRST))
    last = " ".join(f"WHEN {n} THEN '{name}'" for n, name in enumerate(LAST))
    sql = f"""UPDATE customers SET
        first_name = CASE ({index} * 7) % {len(FIRST)} {first} END,
        last_name = CASE ({index} * 13) % {len(LAST)} {last} END,
        phone = CASE WHEN {index} % 4 = 3 THEN NULL ELSE '+4915' || {padded} END"""
    with session_scope() as session:
        session.execute(text(sql))
    if db == "postgresql":
        with session_scope() as session:
            session.execute(text("ANALYZE customers"))


def compute_segments() -> None:
    with session_scope() as session:
        segments.ensure_builtins(session, now=NOW)
    with session_scope() as session:
        customers.refresh_rfm(session, now=NOW)
    with session_scope() as session:
        results = segments.compute_all(session, now=NOW)
    log(", ".join(f"{r.key} {r.members:,}" for r in results))


def send_confirmations(count: int) -> None:
    """Order confirmations to the first `count` customers, delivered."""
    with session_scope() as session:
        for key, channel, template in TEMPLATES:
            messages.templates.save(session, key, channel, template)
        owners = list(
            session.scalars(
                text("SELECT id FROM customers ORDER BY id LIMIT :n"),
                {"n": count},
            )
        )
    for start in range(0, len(owners), 1000):
        with session_scope() as session:
            requests = [
                messages.SendRequest(
                    customer_id=owner,
                    template="order_confirmed",
                    channel=MessageChannel.EMAIL,
                    event={"order_id": f"B{start + n:06d}", "revenue": 42.5, "currency": "EUR"},
                    idempotency_key=f"bench:order_confirmed:{start + n}",
                )
                for n, owner in enumerate(owners[start : start + 1000])
            ]
            messages.send_many(session, requests)
    while True:
        with session_scope() as session:
            if not messages.deliver_round(session, worker_id="bench", now=clock.now()):
                break


def install_journey() -> None:
    with session_scope() as session:
        journeys.install_blueprint(session, JOURNEY)


# ---- what the pages are asked about, and the raw operations they wrap --------------------------


class Raw:
    """The database driver itself (sqlite3 or psycopg), for the raw timings."""

    def __init__(self, url: str) -> None:
        self.sqlite = url.startswith("sqlite")
        if self.sqlite:
            self.conn: Any = sqlite3.connect(str(make_url(url).database))
        else:
            self.conn = psycopg.connect(url, autocommit=True)

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        if not self.sqlite:
            sql = sql.replace("?", "%s")
        return list(self.conn.execute(sql, params).fetchall())

    def one(self, sql: str, *params: object) -> Any:
        found = self.rows(sql, *params)
        return found[0][0] if found else None

    def median_ms(self, runs: int, sql: str, *params: object) -> float:
        self.rows(sql, *params)
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            self.rows(sql, *params)
            times.append((time.perf_counter() - began) * 1000)
        return statistics.median(times)


CUSTOMER_COLUMNS = "id, email, phone, first_name, last_name, traits, created_at"
TIMELINE = "SELECT * FROM events WHERE customer_id = ? ORDER BY timestamp DESC, id DESC LIMIT 50"


@dataclass
class Page:
    path: str  # the path template, as reported
    url: str
    params: dict[str, str] = field(default_factory=dict)
    search: bool = False
    raw: tuple[str, tuple[object, ...]] | None = None  # SQL and parameters
    cache: str | None = None  # the overview: its snapshot "stored", or "none" (computed)


def upper_bound(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def prefix_lookup(raw: Raw, column: str, prefix: str) -> tuple[str, tuple[object, ...]]:
    """The bare index range a search reads: `prefix` <= column < prefix bumped, ordered by
    (column, id); names case-blind, email and phone as stored (bytewise on PostgreSQL)."""
    names = column.endswith("_name")
    if raw.sqlite:
        key, less, at_least, order = f"{column} COLLATE NOCASE" if names else column, "<", ">=", ""
    else:
        key, less, at_least = f"lower({column})" if names else column, "~<~", "~>=~"
        order = " USING ~<~"
    low = prefix.lower() if names else prefix
    sql = (
        f"SELECT {CUSTOMER_COLUMNS} FROM customers WHERE {key} {at_least} ? AND {key} {less} ? "
        f"ORDER BY {key}{order}, id LIMIT 50"
    )
    return sql, (low, upper_bound(low))


def pages(raw: Raw, size: Size, client: TestClient) -> list[Page]:
    """Every page to time, the store's own values filled in."""
    busiest = raw.one("SELECT customer_id FROM customer_facts ORDER BY events_count DESC LIMIT 1")
    email = f"c{size.customers // 2}@example.com"
    phone = raw.one("SELECT phone FROM customers WHERE email = ?", email) or "+4915"
    largest = raw.one("SELECT key FROM segments ORDER BY members_count DESC, key LIMIT 1")
    segment_id = raw.one("SELECT id FROM segments WHERE key = ?", largest)
    newest = f"SELECT {CUSTOMER_COLUMNS} FROM customers ORDER BY id DESC LIMIT 50"
    return [
        Page("/", "/", cache="stored"),
        Page("/", "/", cache="none"),
        Page("/customers", "/customers", raw=(newest, ())),
        Page("/customers?q={last name prefix}", "/customers", {"q": SEARCH_NAME}, True,
             prefix_lookup(raw, "last_name", SEARCH_NAME)),
        Page("/customers?q={email}", "/customers", {"q": email}, True,
             prefix_lookup(raw, "email", email)),
        Page("/customers?q={phone prefix}", "/customers", {"q": phone[:-2]}, True,
             prefix_lookup(raw, "phone", phone[:-2])),
        Page("/customers/{id}", f"/customers/{busiest}", raw=(TIMELINE, (busiest,))),
        second_timeline_page(client, raw, busiest),
        Page("/segments", "/segments"),
        Page("/segments/{key}", f"/segments/{largest}",
             raw=("SELECT * FROM segment_members WHERE segment_id = ? "
                  "ORDER BY customer_id LIMIT 50", (segment_id,))),
        Page("/messages/templates", "/messages/templates"),
        Page("/messages/deliveries", "/messages/deliveries",
             raw=("SELECT * FROM deliveries ORDER BY id DESC LIMIT 50", ())),
        Page("/messages/outbox", "/messages/outbox"),
        Page("/journeys", "/journeys"),
        Page("/journeys/{key}", f"/journeys/{JOURNEY}"),
        Page("/settings", "/settings"),
    ]  # fmt: skip


CURSOR = re.compile(r'hx-get="([^"]*/timeline\?[^"]*before=[^"]*)"')


def second_timeline_page(client: TestClient, raw: Raw, customer: str) -> Page:
    """The timeline's second page, at the cursor the profile (or the first timeline page)
    hands htmx; raw: the same 50 events selected by keyset."""
    path = "/customers/{id}/timeline?before={cursor}"
    url = ""
    for first in (f"/customers/{customer}", f"/customers/{customer}/timeline"):
        answer = client.get(first)
        found = CURSOR.search(answer.text) if answer.status_code == 200 else None
        if found:
            url = html.unescape(found.group(1))
            break
    last = "SELECT timestamp, id FROM events WHERE customer_id = ? ORDER BY timestamp DESC, id DESC"
    last_at, last_id = raw.rows(f"{last} LIMIT 1 OFFSET 49", customer)[0]
    keyset = TIMELINE.replace(
        "ORDER BY", "AND (timestamp < ? OR (timestamp = ? AND id < ?)) ORDER BY"
    )
    return Page(path, url, raw=(keyset, (customer, last_at, last_at, last_id)))


# ---- signing in and timing ---------------------------------------------------------------------


CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def signed_in_client() -> TestClient:
    with session_scope() as session:
        try:
            staff.get_user(session, EMAIL)
        except NotFound:
            staff.create_user(session, EMAIL, name="Bench Owner", role=Role.OWNER,
                              password=PASSWORD)  # fmt: skip
    client = TestClient(create_app(with_worker=False), raise_server_exceptions=False)
    form = client.get("/login")
    token = CSRF_INPUT.search(form.text)
    if token is None:
        raise RuntimeError(f"no csrf_token in GET /login ({form.status_code})")
    answer = client.post(
        "/login",
        data={"email": EMAIL, "password": PASSWORD, "csrf_token": token.group(1), "next": "/"},
        follow_redirects=False,
    )
    if answer.status_code != 303:
        raise RuntimeError(f"sign-in answered {answer.status_code}: {answer.text[:300]}")
    return client


def time_page(db: str, client: TestClient, raw: Raw, page: Page, runs: int) -> str:
    """Time one page and print its line; answers timed, over (target), missing or failed."""
    name, target = ("search_ms", SEARCH_TARGET_MS) if page.search else ("page_ms", PAGE_TARGET_MS)
    extra: dict[str, object] = {"page": page.path, "target": target}
    extra |= {"summary": page.cache} if page.cache else {}
    if not page.url:
        line(db, name, None, "ms", **extra, note="missing: no timeline cursor found")
        return "missing"
    answer = client.get(page.url, params=page.params or None)  # the warm-up
    if answer.status_code == 404:
        line(db, name, None, "ms", **extra, note="missing")
        return "missing"
    times = []
    for _ in range(runs if answer.status_code == 200 else 0):
        if page.cache == "none":
            delete_snapshot()  # else the page reads the one the warm-up stored
        began = time.perf_counter()
        answer = client.get(page.url, params=page.params or None)
        times.append((time.perf_counter() - began) * 1000)
        if answer.status_code != 200:
            break
    if answer.status_code != 200:
        lines = "\n".join(readable(answer.text).splitlines()[:15])
        log(f"{db}: GET {page.url} {page.params or ''} answered {answer.status_code}:\n{lines}")
        line(db, name, None, "ms", **extra, note=f"status {answer.status_code}")
        return "failed"
    median, p95 = statistics.median(times), statistics.quantiles(times, n=100)[94]
    extra |= {"p95": round(p95, 2), "kb": round(len(answer.content) / 1024, 1)}
    if page.raw is not None:
        raw_ms = raw.median_ms(runs, page.raw[0], *page.raw[1])
        extra |= {"raw_ms": round(raw_ms, 3), "ratio": round(median / raw_ms, 1)}
    figure(BENCH, name, db, median, "ms", **extra)
    return "over" if median > target else "timed"


def delete_snapshot() -> None:
    with session_scope() as session:
        session.execute(text("DELETE FROM analytics_snapshots"))


def time_refresh(db: str, runs: int) -> None:
    """The worker's minute: `analytics.refresh` on a stored snapshot (settled days kept),
    against one full refresh (every day of the window counted)."""

    def refresh(*, full: bool = False) -> float:
        began = time.perf_counter()
        with session_scope() as session:
            analytics.refresh(session, now=clock.now(), full=full)
        return (time.perf_counter() - began) * 1000

    full_ms = refresh(full=True)  # also stores the snapshot the others start from
    times = [refresh() for _ in range(runs)]
    median, p95 = statistics.median(times), statistics.quantiles(times, n=100)[94]
    figure(BENCH, "overview_refresh_ms", db, median, "ms", p95=round(p95, 2),
           full_ms=round(full_ms, 2), ratio=round(median / full_ms, 3))  # fmt: skip


def readable(body: str) -> str:
    """The page's main text without markup (an error page's message), else the body."""
    main = body.split("<main", 1)[1] if "<main" in body else body
    text_only = re.sub(r"<[^>]+>", " ", main.split("</main>", 1)[0])
    return "\n".join(" ".join(row.split()) for row in text_only.splitlines() if row.strip())


def time_pages(db: str, url: str, size: Size, runs: int) -> None:
    raw = Raw(url)
    try:
        with clock.frozen(NOW):
            client = signed_in_client()
            outcomes = {
                f"{p.path} ({p.cache})" if p.cache else p.path: time_page(db, client, raw, p, runs)
                for p in pages(raw, size, client)
            }
            time_refresh(db, runs)
    finally:
        raw.conn.close()
    paths = {kind: [p for p, o in outcomes.items() if o == kind] for kind in set(outcomes.values())}
    line(db, "summary", len(paths.get("failed", [])), "failures", pages=len(outcomes),
         timed=len(paths.get("timed", [])) + len(paths.get("over", [])),
         missing=paths.get("missing", []), failed=paths.get("failed", []),
         over_target=paths.get("over", []))  # fmt: skip


# ---- one database, end to end ------------------------------------------------------------------


def bench_database(db: str, size: Size, *, keep: bool, runs: int, pg_url: str) -> None:
    url = prepare_store(db, size, keep=keep, pg_url=pg_url)
    set_database(Database(url))
    try:
        time_pages(db, url, size, runs)
    finally:
        set_database(None)
    if not keep and db == "sqlite":
        shutil.rmtree(Path(str(make_url(url).database)).parent)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20,000 customers, 200,000 events")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the store, reuse it next time")
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args(argv)
    customers_n, events_n = QUICK if args.quick else FULL
    size = Size(args.customers or customers_n, args.events or events_n, args.seed)
    for db in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        bench_database(db, size, keep=args.keep, runs=max(2, args.requests), pg_url=args.pg_url)


if __name__ == "__main__":
    main()
