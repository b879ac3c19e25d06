"""Storage plumbing: the SQLite writer queue and the background checkpoint."""

from __future__ import annotations

import fcntl
import gc
import os
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from sqlalchemy import column, not_, select, table, text, union_all
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from regulars import db as db_module
from regulars.config import reset_settings
from regulars.customers.models import Customer, Event
from regulars.db import (
    Database,
    SQLiteCheckpointer,
    SQLiteWriterQueue,
    bulk_update,
    one_of,
    one_of_parameter,
    read_together,
    table_of,
)
from tests.customers.helpers import ingest, owner_of


@pytest.mark.parametrize("backend", ["sqlite"])
def test_checkpoint_folds_the_wal_back_into_the_database(database: Database) -> None:
    ingest([{"type": "track", "userId": f"u{i}", "event": "Seen"} for i in range(50)])
    busy, frames, folded = SQLiteCheckpointer(database).checkpoint_once()
    assert busy == 0
    assert frames > 0
    assert folded == frames


def test_sqlite_connections_fold_the_wal_at_the_configured_size(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    def autocheckpoint_pages() -> int:
        database = Database(f"sqlite:///{tmp_path}/regulars.db")
        try:
            with database.writer.connect() as conn:
                return int(conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())
        finally:
            database.dispose()

    assert autocheckpoint_pages() == 100_000  # the documented default
    monkeypatch.setenv("REGULARS_SQLITE_WAL_AUTOCHECKPOINT", "2500")
    reset_settings()
    try:
        assert autocheckpoint_pages() == 2500
    finally:
        monkeypatch.undo()
        reset_settings()


def test_writer_queue_lets_one_writer_in_at_a_time(tmp_path: object) -> None:
    queue = SQLiteWriterQueue(f"{tmp_path}/regulars.db")
    inside: list[int] = []
    overlaps: list[int] = []

    def write(n: int) -> None:
        for _ in range(200):
            with queue.turn():
                inside.append(n)
                if len(inside) > 1:
                    overlaps.append(n)
                with queue.turn():  # re-entrant in one thread
                    pass
                inside.remove(n)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []
    assert inside == []


def test_writer_queue_holds_the_lock_file_other_processes_wait_on(tmp_path: object) -> None:
    path = f"{tmp_path}/regulars.db"
    queue = SQLiteWriterQueue(path)
    other_process = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with queue.turn(), pytest.raises(BlockingIOError):
            fcntl.flock(other_process, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other_process, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free once the turn ends
        fcntl.flock(other_process, fcntl.LOCK_UN)
    finally:
        os.close(other_process)


def test_one_of_finds_exactly_the_listed_ids_at_any_length(database: Database) -> None:
    # 1,200 profiles: more ids than one IN list of IN_LIST_CHUNK would carry.
    result = ingest(
        [
            {"type": "identify", "userId": f"u{n}", "messageId": f"m{n}", "traits": {}}
            for n in range(1200)
        ]
    )
    assert result.accepted == 1200
    with database.session(readonly=True) as session:
        ids = sorted(session.scalars(select(Customer.id)))
        wanted = [*ids[::2], "not-a-customer"]
        found = session.scalars(
            select(Customer.id).where(one_of(session, Customer.id, wanted))
        ).all()
        nothing = session.scalars(select(Customer.id).where(one_of(session, Customer.id, []))).all()
        statement = select(Customer.id).where(one_of(session, Customer.id, wanted))
        sql = str(statement.compile(dialect=session.get_bind().dialect))
        assert sorted(found) == ids[::2]
        assert nothing == []
    if not database.is_sqlite:  # one array parameter, whatever the number of ids
        assert "= ANY (" in sql and sql.count("%(") == 1


def test_one_of_negated_and_combined_keeps_its_meaning(database: Database) -> None:
    ingest([{"type": "identify", "userId": u, "messageId": u, "traits": {}} for u in "abc"])
    with database.session(readonly=True) as session:
        a, b, c = (owner_of(u) for u in "abc")
        everyone = one_of(session, Customer.id, [a, b, c])
        not_a_or_b = not_(one_of(session, Customer.id, [a, b]))
        found = session.scalars(select(Customer.id).where(everyone, not_a_or_b)).all()
    assert found == [c]


def test_building_one_of_leaves_nothing_for_the_cyclic_collector(database: Database) -> None:
    """Workers build these conditions on every batch: objects in reference cycles would wait
    for the collector, whose passes pause the whole process."""
    with database.session(readonly=True) as session:
        gc.collect()
        for n in range(50):
            select(Customer.id).where(one_of(session, Customer.id, [f"id{n}"]))
        assert gc.collect() == 0


def test_bulk_update_sets_each_row_its_own_values_and_leaves_the_rest(database: Database) -> None:
    result = ingest(
        [
            {"type": "identify", "userId": f"u{n}", "messageId": f"m{n}", "traits": {"n": n}}
            for n in range(6)
        ]
    )
    assert result.accepted == 6
    at = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
    with database.session() as session:
        before = {c.id: dict(c.traits) for c in session.scalars(select(Customer))}
        ids = sorted(before)
        changed, untouched = ids[:4], ids[4:]
        rows = [
            {
                "id": customer_id,
                "first_name": None if k == 3 else f"Name {k}",
                "traits": {"plan": {"tier": k}, "tags": ["a", k]},
                "updated_at": at + timedelta(minutes=k),
                "traits_updated_at": None,  # a column all of whose values are NULL
            }
            for k, customer_id in enumerate(changed)
        ]
        bulk_update(session, table_of(Customer), rows, key="id", shape="test")
        bulk_update(session, table_of(Customer), [], key="id", shape="test")
    with database.session(readonly=True) as session:
        found = {c.id: c for c in session.scalars(select(Customer))}
    for k, customer_id in enumerate(changed):
        customer = found[customer_id]
        assert customer.first_name == (None if k == 3 else f"Name {k}")
        assert customer.traits == {"plan": {"tier": k}, "tags": ["a", k]}
        assert customer.updated_at == at + timedelta(minutes=k)
        assert customer.traits_updated_at is None
    for customer_id in untouched:
        assert found[customer_id].traits == before[customer_id]
        assert found[customer_id].traits_updated_at is not None


def test_bulk_writes_store_each_time_whether_rows_share_it_or_not(database: Database) -> None:
    """SQLite converts each distinct time of a batch once: rows sharing one, an equal instant
    in another zone and a time a microsecond apart each keep their own."""
    assert ingest([{"type": "identify", "userId": f"u{n}", "messageId": f"m{n}"} for n in range(4)])
    at = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
    times = [at, at, at.astimezone(ZoneInfo("Europe/Berlin")), at + timedelta(microseconds=1)]
    with database.session() as session:
        ids = sorted(session.scalars(select(Customer.id)))
        rows = [{"id": i, "updated_at": t} for i, t in zip(ids, times, strict=True)]
        bulk_update(session, table_of(Customer), rows, key="id", shape="test-times")
    with database.session(readonly=True) as session:
        stored = {c.id: c.updated_at for c in session.scalars(select(Customer))}
    assert [stored[i] for i in ids] == [at, at, at, datetime(2026, 5, 1, 8, 30, 0, 1, tzinfo=UTC)]


def test_times_read_back_aware_in_utc_through_every_read(database: Database) -> None:
    """The ORM, Core and read_together give the stored instant as an aware UTC time; on SQLite
    also the text forms a hand-written row may hold (no microseconds, a bare date)."""
    assert ingest([{"type": "identify", "userId": f"u{n}", "messageId": f"m{n}"} for n in range(3)])
    at = datetime(2026, 5, 1, 8, 30, 15, 250, tzinfo=UTC)
    with database.session() as session:
        ids = sorted(session.scalars(select(Customer.id)))
        bulk_update(
            session, table_of(Customer), [{"id": ids[0], "updated_at": at}], key="id", shape="t"
        )
        expected = {ids[0]: at}
        if database.is_sqlite:
            for customer_id, stored in zip(
                ids[1:], ["2026-05-01 08:30:15", "2026-05-01"], strict=True
            ):
                session.execute(
                    text("UPDATE customers SET updated_at = :t WHERE id = :id"),
                    {"t": stored, "id": customer_id},
                )
            expected |= {
                ids[1]: at.replace(microsecond=0),
                ids[2]: datetime(2026, 5, 1, tzinfo=UTC),
            }
    query = select(Customer.id, Customer.updated_at)
    with database.session(readonly=True) as session:
        through_orm = {c.id: c.updated_at for c in session.scalars(select(Customer))}
        through_core = dict(session.execute(query).tuples().all())
        (together,) = read_together(session, [(query, {})])
    for found in (through_orm, through_core, dict(together)):
        assert {i: found[i] for i in expected} == expected
        assert all(found[i].tzinfo is UTC for i in expected)


def test_reads_together_answer_what_each_read_answers_alone(database: Database) -> None:
    at = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
    sent = [
        {"type": "track", "userId": f"u{n}", "event": "Order Completed", "messageId": f"o{n}",
         "timestamp": (at + timedelta(minutes=n)).isoformat(),
         "properties": {"revenue": 10 + n, "items": [{"sku": f"s{n}"}]}}
        for n in range(3)
    ]  # fmt: skip
    assert ingest(sent).accepted == 3
    events = table_of(Event)
    with database.session() as session:
        ids = {"ids": [owner_of("u0"), owner_of("u1")]}
        orders = (
            select(events.c.customer_id, events.c.name, events.c.timestamp, events.c.properties)
            .where(one_of_parameter(session, events.c.customer_id, "ids"))
            .where(one_of(session, events.c.name, ["Order Completed", "Refunded"]))
            .order_by(events.c.timestamp)
        )
        people = select(Customer.id, Customer.created_at).where(
            one_of_parameter(session, Customer.id, "ids")
        )
        found_orders, found_people = read_together(session, [(orders, ids), (people, ids)])
        assert found_orders == [tuple(row) for row in session.execute(orders, ids)]
        assert sorted(found_people) == sorted(tuple(row) for row in session.execute(people, ids))
    assert [(at, doc) for _, _, at, doc in found_orders] == [
        (at + timedelta(minutes=n), {"revenue": 10 + n, "items": [{"sku": f"s{n}"}]})
        for n in range(2)
    ]
    assert all(created.tzinfo is UTC for _, created in found_people)


def _unsaved_customer(*, traits: dict[str, Any]) -> Customer:
    at = datetime(2026, 5, 1, tzinfo=UTC)
    return Customer(id="01HZZZZZZZZZZZZZZZZZZZZZZZ", traits=traits, created_at=at, updated_at=at)


def test_a_parameter_a_read_uses_twice_is_converted_once(database: Database) -> None:
    """The union of two selects on the same id list: the list is one parameter (a JSON array
    on SQLite), which converted once per use would be encoded twice and match nothing."""
    assert ingest([{"type": "identify", "userId": u, "messageId": u} for u in "ab"]).accepted == 2
    customers = table_of(Customer)
    with database.session() as session:
        by_id = select(customers.c.id).where(one_of_parameter(session, customers.c.id, "ids"))
        twice = union_all(by_id, by_id)
        ids = {"ids": [owner_of("a")]}
        (found,) = read_together(session, [(twice, ids)])
    assert found == [(owner_of("a"),), (owner_of("a"),)]


def test_reads_together_see_what_the_transaction_has_not_flushed_yet(database: Database) -> None:
    with database.session() as session:
        session.add(_unsaved_customer(traits={"city": "Berlin"}))
        query = select(Customer.id, Customer.traits)
        assert read_together(session, [(query, {})]) == [
            [("01HZZZZZZZZZZZZZZZZZZZZZZZ", {"city": "Berlin"})]
        ]


def test_a_failing_read_raises_as_through_sqlalchemy_and_nothing_is_kept(
    database: Database,
) -> None:
    missing = table("no_such_table", column("id"))

    def add_then_read() -> None:
        with database.session() as session:
            session.add(_unsaved_customer(traits={}))
            read_together(session, [(select(Customer.id), {}), (select(missing.c.id), {})])

    with pytest.raises(DBAPIError, match="no_such_table"):
        add_then_read()
    with database.session(readonly=True) as session:
        assert session.scalars(select(Customer.id)).all() == []


if os.environ.get("REGULARS_TEST_DATABASE_URL"):  # exists only where PostgreSQL does

    def _backend_pid(database: Database) -> int:
        with database.session() as session:
            return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())

    @pytest.mark.parametrize("backend", ["postgresql"])
    def test_a_connection_back_from_work_a_moment_ago_is_handed_out_without_a_ping(
        database: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        pings: list[object] = []
        real_ping = database.writer.dialect.do_ping

        def counted_ping(connection: Any) -> bool:
            pings.append(connection)
            return real_ping(connection)

        monkeypatch.setattr(database.writer.dialect, "do_ping", counted_ping)
        first = _backend_pid(database)
        assert _backend_pid(database) == first  # the same pooled connection, reused
        assert pings == []

    @pytest.mark.parametrize("backend", ["postgresql"])
    def test_an_idle_connection_that_died_is_replaced_before_anyone_uses_it(
        database: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        first = _backend_pid(database)
        plain_url = make_url(database.url).set(drivername="postgresql")
        with psycopg.connect(plain_url.render_as_string(hide_password=False)) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [first])  # as a restart would
        monkeypatch.setattr(db_module, "IDLE_PING_SECONDS", 0.0)  # every pooled one is idle
        assert _backend_pid(database) not in (first, 0)
