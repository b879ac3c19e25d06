"""Messages: a personalised email broadcast to a local SMTP server, and transactional messages
through the API with the embedded worker.

    python -m bench.messages [--quick] [--db sqlite|postgresql|both] [--customers N]
                             [--seconds S] [--rate R] [--seed N] [--pg-url URL]
                             [--concurrency N]

The store: N customers (100,000; --quick 2,000) made from --seed, each an identify (email,
first name, locale en-US or de-DE 60/40 with a time zone to match, email and
email:newsletter consents subscribed) and an Order Completed (5.00 to 299.99 EUR), ingested
1,000 customers per transaction. A segment (email and newsletter consent subscribed) is
computed; a marketing MJML template (topic newsletter, en and de) greets by first name,
shows the customer's revenue with `money` and has two links; a transactional one,
order_confirmed, shows the event's order id and amount. One `smtp` provider (no TLS, the
transport's defaults otherwise) points at a sink in a process of its own (bench/smtp_sink.py)
that only counts. Frequency caps are off (REGULARS_FREQUENCY_CAPS='[]'). One segment sweep
runs before the figures: it installs the built-in segments, as a new server's first does
(on 100,000 customers that holds SQLite's write lock for about 7 s).

Broadcast figures, per database: broadcast_msgs_per_s, from broadcasts.create to the last
delivery recorded sent, the work driven in this process by regulars.worker.Worker.run_once
in a loop (recurring jobs left out, so no sweep lands in the middle); `ratio` against
raw_smtp_msgs_per_s, a plain loop of smtplib sendmail over one connection to the same sink
with the same messages, rendered and built into MIME bytes as SMTPTransport builds them
beforehand (up to 20,000 of them). The run is split into the time spent in the deliveries
queue (broadcast_dispatch_msgs_per_s: claim, SMTP, record) and the rest
(broadcast_expand_msgs_per_s: the messages.broadcast jobs, i.e. segment walk, policies,
rendering, insert, and the job machinery). broadcast_peak_rss: this process's peak resident
memory during the broadcast (at_start_mb: its resident memory when the broadcast began).
With --concurrency N (PostgreSQL only; SQLite runs one worker thread) N worker threads share
the broadcast, as `regulars worker -c N` runs them; their times overlap, so the
dispatch/expand split is not printed then.

Transactional figures: a server (uvicorn, REGULARS_EMBEDDED_WORKER=true) on the same
database takes POST /api/messages (order_confirmed, an event with order_id, revenue and
currency, a distinct idempotency key each) at a steady --rate per second (50) for --seconds
(30; --quick 5), open loop: request i leaves at t0 + i/rate, from 3 client threads. Per
request, from the client's send (wall clock) to the sink accepting the message (tx_handover:
handed to the provider) and to the delivery's sent_at (tx_sent_at: the dispatcher stamps
the start of the round that carried it), p50/p95/p99/max; the HTTP answer's p50/p99.
tx_requests_per_s lists the jobs the server's worker ran meanwhile (a segment sweep each
minute). On PostgreSQL, deliveries and jobs are vacuumed after the broadcast first, as
autovacuum would within a minute.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import smtplib
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bench.common import figure, fresh_database, running_server
from bench.smtp_sink import SinkProcess
from regulars.config import reset_settings
from regulars.customers import service as customers
from regulars.db import Database, session_scope, set_database, table_of
from regulars.identity.models import ApiKeyScope
from regulars.identity.service import create_api_key
from regulars.jobs import service as jobs
from regulars.jobs.models import Job
from regulars.messages import broadcasts, providers, templates
from regulars.messages.channels.email import SMTPConfig, _Composer
from regulars.messages.dispatch import _outgoing
from regulars.messages.models import Category, Delivery, DeliveryStatus, MessageChannel
from regulars.messages.schemas import BroadcastCreate, ProviderWrite, TemplateWrite
from regulars.segments import service as segments
from regulars.segments.schemas import SegmentCreate
from regulars.worker import Worker

BENCH = "messages"
FULL_CUSTOMERS, QUICK_CUSTOMERS = 100_000, 2_000
FULL_SECONDS, QUICK_SECONDS = 30.0, 5.0
RATE = 50.0
CLIENTS = 3
CHUNK = 1000  # customers per ingest transaction
RAW_MAX = 20_000
PG_URL = "postgresql://postgres@127.0.0.1:5432/regulars_bench_messages"
T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
STARTUP_SECONDS = 30.0
SETTLE_SECONDS = 60.0
SENDER = "Bench Coffee <news@shop.example>"
SEGMENT, NEWSLETTER, ORDER = "newsletter-readers", "spring_roasts", "order_confirmed"
FINAL = {
    DeliveryStatus.SENT,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.FAILED,
    DeliveryStatus.BOUNCED,
    DeliveryStatus.SUPPRESSED,
    DeliveryStatus.EXPIRED,
    DeliveryStatus.CANCELLED,
}
ENGLISH = ("Olivia", "James", "Amelia", "Noah", "Isla", "Oliver", "Ava", "Jack", "Mia", "Leo")
GERMAN = ("Emma", "Lukas", "Hannah", "Jonas", "Lea", "Elias", "Mia", "Finn", "Jürgen", "Zoë")


def log(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


# ---- the store ---------------------------------------------------------------------------------


def customer_messages(start: int, count: int, seed: int) -> list[dict[str, Any]]:
    """An identify and an order for each customer of [start, start + count)."""
    rng = random.Random(f"{seed}-{start}")
    messages: list[dict[str, Any]] = []
    at = T0.isoformat()
    for n in range(start, start + count):
        german = rng.random() < 0.4
        traits = {
            "email": f"c{n:06d}@example.com",
            "firstName": rng.choice(GERMAN if german else ENGLISH),
            "locale": "de-DE" if german else "en-US",
            "timezone": "Europe/Berlin" if german else "America/New_York",
            "consents": {"email": "subscribed", "email:newsletter": "subscribed"},
        }
        order = {
            "order_id": f"o-{n}",
            "revenue": rng.randrange(500, 30000) / 100,
            "currency": "EUR",
        }
        user = {"userId": f"u{n:06d}", "timestamp": at}
        messages.append({**user, "type": "identify", "messageId": f"i-{n}", "traits": traits})
        messages.append(
            {
                **user,
                "type": "track",
                "messageId": f"o-{n}",
                "event": "Order Completed",
                "properties": order,
            }
        )
    return messages


def build_store(count: int, seed: int) -> None:
    for start in range(0, count, CHUNK):
        batch = customer_messages(start, min(CHUNK, count - start), seed)
        with session_scope() as session:
            result = customers.ingest(session, batch, source="bench")
        if result.accepted != len(batch):
            raise RuntimeError(f"ingest accepted {result.accepted} of {len(batch)}")


def mjml(*blocks: str) -> str:
    return f"<mjml><mj-body><mj-section><mj-column>{''.join(blocks)}</mj-column></mj-section></mj-body></mjml>"  # noqa: E501


NEWSLETTER_LOCALES = {
    "en": {
        "subject": "{{ customer.first_name }}, the spring roasts are in",
        "preheader": "Two new single origins, roasted this week",
        "body": mjml(
            "<mj-text>Hi {{ customer.first_name }},</mj-text>",
            "<mj-text>Our spring roasts are in: a washed Ethiopian and a honey Costa Rican."
            " Thank you for the {{ facts.revenue_total | money: 'EUR' }} of coffee so far."
            "</mj-text>",
            '<mj-button href="https://shop.example.com/spring">See the roasts</mj-button>',
            '<mj-text><a href="https://shop.example.com/blog/brewing">How we brew them</a>'
            ' · <a href="{{ links.unsubscribe }}">Unsubscribe</a></mj-text>',
        ),
    },
    "de": {
        "subject": "{{ customer.first_name }}, die Frühlingsröstungen sind da",
        "preheader": "Zwei neue Single Origins, diese Woche geröstet",
        "body": mjml(
            "<mj-text>Hallo {{ customer.first_name }},</mj-text>",
            "<mj-text>Unsere Frühlingsröstungen sind da: ein gewaschener Äthiopier und ein"
            " Honey aus Costa Rica. Danke für {{ facts.revenue_total | money: 'EUR' }}"
            " Kaffee bisher.</mj-text>",
            '<mj-button href="https://shop.example.com/de/fruehling">Zu den Röstungen</mj-button>',
            '<mj-text><a href="https://shop.example.com/de/blog/zubereitung">So brühen wir sie</a>'
            ' · <a href="{{ links.unsubscribe }}">Abmelden</a></mj-text>',
        ),
    },
}
ORDER_LOCALES = {
    "en": {
        "subject": "Order {{ event.order_id }} confirmed",
        "body": mjml(
            "<mj-text>Thank you, {{ customer.first_name }}: order {{ event.order_id }} of"
            " {{ event.revenue | money: event.currency }} is confirmed.</mj-text>",
            '<mj-button href="https://shop.example.com/orders">Your orders</mj-button>',
        ),
    },
}


def prepare_messaging(sink: SinkProcess) -> int:
    """Segment, templates and provider; answers the segment's member count."""
    rule = {
        "type": "and",
        "rules": [
            {"type": "consent", "channel": "email"},
            {"type": "consent", "channel": "email", "topic": "newsletter"},
        ],
    }
    with session_scope() as session:
        segments.create(session, SegmentCreate(key=SEGMENT, name="Newsletter readers", rule=rule))
        members = segments.compute(session, SEGMENT).members
        segments.sweep(session)  # installs the built-in segments, as a running server's first
        marketing = TemplateWrite(
            name="Spring roasts",
            category=Category.MARKETING,
            topic="newsletter",
            locales=NEWSLETTER_LOCALES,
        )
        templates.save(session, NEWSLETTER, MessageChannel.EMAIL, marketing)
        order = TemplateWrite(name="Order confirmed", locales=ORDER_LOCALES)
        templates.save(session, ORDER, MessageChannel.EMAIL, order)
        config = {"host": sink.host, "port": sink.port, "security": "none", "from_address": SENDER}
        providers.save(
            session, "sink", ProviderWrite(channel=MessageChannel.EMAIL, kind="smtp", config=config)
        )
    return members


# ---- the broadcast, driven by the real worker --------------------------------------------------


class TimedRegistry(jobs.Registry):
    """The worker's registry, with the time spent in each queue drain added up, and without
    recurring jobs (a segment sweep or an RFM refresh must not land inside the figure)."""

    def __init__(self, inner: jobs.Registry) -> None:
        super().__init__()
        self._inner = inner
        self.drain_seconds = 0.0

    @property
    def queues(self) -> list[jobs.Queue]:
        return [replace(q, drain=self._timed(q.drain)) for q in self._inner.queues]

    def handler(self, kind: str) -> jobs.Handler:
        return self._inner.handler(kind)

    @property
    def schedules(self) -> list[jobs.Schedule]:
        return []

    def _timed(self, drain: jobs.QueueDrain) -> jobs.QueueDrain:
        def timed(worker_id: str, now: datetime, limit: int) -> int:
            began = time.perf_counter()
            try:
                return drain(worker_id, now, limit)
            finally:
                self.drain_seconds += time.perf_counter() - began

        return timed


@dataclass(frozen=True)
class BroadcastRun:
    broadcast_id: str
    seconds: float
    dispatch_seconds: float
    peak_rss_mb: float
    rss_at_start_mb: float
    statuses: dict[str, int]


def run_broadcast(concurrency: int = 1) -> BroadcastRun:
    """The broadcast, worked by `concurrency` workers (threads, as `regulars worker -c N`
    runs them on PostgreSQL); with one, in this thread."""
    jobs.discover()
    registry = TimedRegistry(jobs.registry)
    workers = [Worker(registry=registry, worker_id=f"bench-{i}") for i in range(concurrency)]
    at_start = _reset_peak_rss()
    began = time.perf_counter()
    with session_scope() as session:
        data = BroadcastCreate(name="Spring roasts", template=NEWSLETTER, segment=SEGMENT)
        broadcast_id = broadcasts.create(session, data).id
    stop = threading.Event()
    helpers = [threading.Thread(target=_work, args=(w, stop)) for w in workers[1:]]
    for helper in helpers:
        helper.start()
    try:
        statuses = _work_until_sent(workers[0], broadcast_id)
    finally:
        stop.set()
        for helper in helpers:
            helper.join()
    seconds = time.perf_counter() - began
    peak = _memory_mb("VmHWM")
    return BroadcastRun(broadcast_id, seconds, registry.drain_seconds, peak, at_start, statuses)


def _work(worker: Worker, stop: threading.Event) -> None:
    while not stop.is_set():
        if worker.run_once() == 0:
            stop.wait(0.01)  # the other worker is queueing the next chunk


def _work_until_sent(worker: Worker, broadcast_id: str) -> dict[str, int]:
    idle_since: float | None = None
    while True:
        if worker.run_once() > 0:
            idle_since = None
            continue
        statuses = _statuses(broadcast_id)
        if _broadcast_done(broadcast_id) and not set(statuses) - FINAL:
            return statuses
        idle_since = idle_since or time.monotonic()
        if time.monotonic() - idle_since > SETTLE_SECONDS:
            raise RuntimeError(f"the broadcast stalled: {statuses}")
        time.sleep(0.05)  # deliveries held for a retry: wait for them (bounded above)


def _statuses(broadcast_id: str) -> dict[str, int]:
    query = (
        select(Delivery.status, func.count())
        .where(Delivery.broadcast_id == broadcast_id)
        .group_by(Delivery.status)
    )
    with session_scope(readonly=True) as session:
        return {str(status): count for status, count in session.execute(query)}


def _broadcast_done(broadcast_id: str) -> bool:
    with session_scope(readonly=True) as session:
        found = broadcasts.get(session, broadcast_id)
    return found is not None and found.status == broadcasts.BroadcastStatus.SENT


def _reset_peak_rss() -> float:
    """Start VmHWM (the peak) again from the current RSS, which it answers in MB. Python keeps
    memory it freed, so after another database's run the start is not the bare process."""
    Path("/proc/self/clear_refs").write_text("5")
    return _memory_mb("VmRSS")


def _memory_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


# ---- the raw operation: sendmail of ready bytes over one connection ----------------------------


def raw_smtp_rate(sink: SinkProcess, broadcast_id: str) -> tuple[float, int]:
    """(messages per second, messages) of a plain smtplib loop over the broadcast's own
    messages, their MIME bytes built beforehand exactly as SMTPTransport builds them."""
    composer = _Composer(
        SMTPConfig(host=sink.host, port=sink.port, security="none", from_address=SENDER)
    )
    deliveries = table_of(Delivery)  # rows as the worker's claim returns them
    query = select(*deliveries.c).where(deliveries.c.broadcast_id == broadcast_id).limit(RAW_MAX)
    with session_scope(readonly=True) as session:
        mails = [composer.compose(_outgoing(row, None)) for row in session.execute(query)]
    sink.reset()
    smtp = smtplib.SMTP(sink.host, sink.port, "bench", timeout=30)
    began = time.perf_counter()
    for mail in mails:
        smtp.sendmail(mail.sender, [mail.recipient], mail.data)
    seconds = time.perf_counter() - began
    smtp.quit()
    if sink.count() != len(mails):
        raise RuntimeError(f"the sink counted {sink.count()} of {len(mails)} raw messages")
    return len(mails) / seconds, len(mails)


def broadcast_figures(db: str, sink: SinkProcess, *, audience: int, concurrency: int) -> None:
    sink.reset()
    run = run_broadcast(concurrency)
    sent = run.statuses.get(DeliveryStatus.SENT, 0)
    arrived = sink.count()
    if sent != audience or arrived != audience:
        raise RuntimeError(f"{audience} members, {run.statuses}, {arrived} at the sink")
    raw, raw_count = raw_smtp_rate(sink, run.broadcast_id)
    rate = audience / run.seconds
    expand_seconds = run.seconds - run.dispatch_seconds
    extra = {"messages": audience, "seconds": round(run.seconds, 2), "workers": concurrency}
    figure(BENCH, "broadcast_msgs_per_s", db, rate, "msgs/s", ratio=round(rate / raw, 3), **extra)
    if concurrency == 1:  # with several threads their times overlap: no split
        _split_figures(db, audience, expand_seconds, run.dispatch_seconds)
    figure(BENCH, "raw_smtp_msgs_per_s", db, raw, "msgs/s", messages=raw_count)
    at_start = round(run.rss_at_start_mb, 1)
    figure(BENCH, "broadcast_peak_rss", db, run.peak_rss_mb, "MB", at_start_mb=at_start)


def _split_figures(db: str, audience: int, expand_seconds: float, dispatch_seconds: float) -> None:
    for name, seconds in (("expand", expand_seconds), ("dispatch", dispatch_seconds)):
        rate = audience / seconds
        figure(BENCH, f"broadcast_{name}_msgs_per_s", db, rate, "msgs/s", seconds=round(seconds, 2))


# ---- transactional messages through the API ----------------------------------------------------


@dataclass(frozen=True)
class Answer:
    delivery_id: str
    sent_at: float  # time.time() at the client's send
    http_ms: float
    late_ms: float  # how far behind its schedule the request left


def request_bodies(total: int, *, customers_count: int, seed: int) -> list[bytes]:
    rng = random.Random(f"{seed}-tx")
    bodies = []
    for i in range(total):
        event = {
            "order_id": f"T-{i:05d}",
            "revenue": rng.randrange(500, 30000) / 100,
            "currency": "EUR",
        }
        body = {
            "customer": f"c{rng.randrange(customers_count):06d}@example.com",
            "template": ORDER,
            "channel": "email",
            "idempotency_key": f"bench-tx-{i}",
            "event": event,
        }
        bodies.append(orjson.dumps(body))
    return bodies


def send_steadily(port: int, api_key: str, bodies: Sequence[bytes], rate: float) -> list[Answer]:
    """Open loop: request i leaves at t0 + i / rate, from CLIENTS threads taking turns."""
    answers: list[Answer | None] = [None] * len(bodies)
    failures: list[str] = []
    t0 = time.perf_counter() + 0.5
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    def client(first: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in range(first, len(bodies), CLIENTS):
            due = t0 + i / rate
            time.sleep(max(0.0, due - time.perf_counter()))  # the schedule, not a wait for work
            began, wall = time.perf_counter(), time.time()
            conn.request("POST", "/api/messages", bodies[i], headers)
            response = conn.getresponse()
            answer = orjson.loads(response.read())
            http_ms = (time.perf_counter() - began) * 1000
            if response.status != 201 or answer.get("status") != "queued":
                failures.append(f"{response.status} {answer}")
                continue
            answers[i] = Answer(answer["id"], wall, http_ms, (began - due) * 1000)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed; first: {failures[0][:300]}")
    return [a for a in answers if a is not None]


def sent_times(delivery_ids: Sequence[str]) -> dict[str, tuple[str, datetime | None]]:
    """Each delivery's status and sent_at, once none is pending (bounded wait)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        with session_scope(readonly=True) as session:
            rows = session.execute(
                select(Delivery.id, Delivery.status, Delivery.sent_at).where(
                    Delivery.id.in_(delivery_ids)
                )
            ).all()
        found = {row.id: (str(row.status), row.sent_at) for row in rows}
        if all(status in FINAL for status, _ in found.values()) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)  # the server's worker is still sending; bounded by the deadline


def percentiles(db: str, name: str, values: list[float], cuts: Sequence[int]) -> None:
    marks = statistics.quantiles(values, n=100, method="inclusive")
    for cut in cuts:
        figure(BENCH, f"{name}_p{cut}_ms", db, marks[cut - 1], "ms")
    figure(BENCH, f"{name}_max_ms", db, max(values), "ms")


def transactional_figures(
    db: str, url: str, sink: SinkProcess, *, seconds: float, rate: float, audience: int, seed: int
) -> None:
    with session_scope() as session:
        _, api_key = create_api_key(session, "bench", ApiKeyScope.WRITE)
    bodies = request_bodies(int(seconds * rate), customers_count=audience, seed=seed)
    sink.reset()
    with running_server(url, embedded_worker=True) as server:
        port = server.port
        began, window = time.perf_counter(), datetime.now(UTC)
        answers = send_steadily(port, api_key, bodies, rate)
        achieved = len(answers) / (time.perf_counter() - began - 0.5)
        outcome = sent_times([a.delivery_id for a in answers])
    server_jobs = jobs_finished_since(window)
    arrivals = sink.arrivals()
    statuses = [status for status, _ in outcome.values()]
    if statuses.count(DeliveryStatus.SENT) != len(bodies) or len(arrivals) != len(bodies):
        counts = {s: statuses.count(s) for s in set(statuses)}
        raise RuntimeError(f"{len(bodies)} requests: {counts}, {len(arrivals)} at the sink")
    to_sink = [(arrivals[a.delivery_id] - a.sent_at) * 1000 for a in answers]
    to_sent_at = []
    for a in answers:
        stamped = outcome[a.delivery_id][1]
        assert stamped is not None
        to_sent_at.append((stamped.timestamp() - a.sent_at) * 1000)
    figure(
        BENCH,
        "tx_requests_per_s",
        db,
        achieved,
        "requests/s",
        target=rate,
        requests=len(answers),
        server_jobs=server_jobs,
        late_p99_ms=round(_p99([a.late_ms for a in answers]), 2),
    )
    percentiles(db, "tx_handover", to_sink, (50, 95, 99))
    percentiles(db, "tx_sent_at", to_sent_at, (50, 95, 99))
    percentiles(db, "tx_http", [a.http_ms for a in answers], (50, 99))


def jobs_finished_since(since: datetime) -> dict[str, int]:
    """The jobs the server's worker ran meanwhile (a sweep holds SQLite's write lock)."""
    query = select(Job.kind, func.count()).where(Job.finished_at >= since).group_by(Job.kind)
    with session_scope(readonly=True) as session:
        return {str(kind): int(count) for kind, count in session.execute(query)}


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def vacuum(url: str) -> None:
    """What autovacuum does within a minute of a broadcast (this machine's PostgreSQL runs
    with it off): otherwise each claim of the deliveries queue reads the 200,000 dead index
    entries the broadcast left, 17 ms a claim instead of 0.05 ms."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("deliveries", "jobs"):
            conn.execute(f"VACUUM ANALYZE {table}")


def drop_sqlite(url: str) -> None:
    """Remove the SQLite work file fresh_database made (1.3 GB at full size)."""
    if url.startswith("sqlite"):
        directory = Path(str(make_url(url).database)).parent
        if directory.name.startswith("regulars-bench-"):
            shutil.rmtree(directory)


# ---- one database, end to end ------------------------------------------------------------------


def bench_database(
    db: str, *, count: int, seconds: float, rate: float, seed: int, pg_url: str, concurrency: int
) -> None:
    url = fresh_database(db, pg_url=pg_url)
    set_database(Database(url))
    try:
        with SinkProcess() as sink:
            began = time.perf_counter()
            build_store(count, seed)
            audience = prepare_messaging(sink)
            log(
                f"{db}: {count:,} customers, {audience:,} members in "
                f"{time.perf_counter() - began:.1f} s"
            )
            workers = concurrency if db == "postgresql" else 1  # SQLite: one worker thread
            broadcast_figures(db, sink, audience=audience, concurrency=workers)
            if db == "postgresql":
                vacuum(url)
            transactional_figures(
                db, url, sink, seconds=seconds, rate=rate, audience=count, seed=seed
            )
    finally:
        set_database(None)
        drop_sqlite(url)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.messages",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="2,000 customers, 5 s of API")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None, help="of transactional load")
    parser.add_argument("--rate", type=float, default=RATE, help="transactional requests/s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="worker threads for the broadcast on PostgreSQL (regulars worker -c N)",
    )
    args = parser.parse_args()
    count = args.customers or (QUICK_CUSTOMERS if args.quick else FULL_CUSTOMERS)
    seconds = args.seconds or (QUICK_SECONDS if args.quick else FULL_SECONDS)
    os.environ["REGULARS_FREQUENCY_CAPS"] = "[]"  # this process, and the server it starts
    reset_settings()
    for db in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        bench_database(
            db,
            count=count,
            seconds=seconds,
            rate=args.rate,
            seed=args.seed,
            pg_url=args.pg_url,
            concurrency=args.concurrency,
        )


if __name__ == "__main__":
    main()
