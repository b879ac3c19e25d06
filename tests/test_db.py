"""Storage plumbing: the SQLite writer queue and the background checkpoint."""

from __future__ import annotations

import fcntl
import os
import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from regulars.customers.models import Customer
from regulars.db import (
    Database,
    SQLiteCheckpointer,
    SQLiteWriterQueue,
    bulk_update,
    one_of,
    table_of,
)
from tests.customers.helpers import ingest


@pytest.mark.parametrize("backend", ["sqlite"])
def test_checkpoint_folds_the_wal_back_into_the_database(database: Database) -> None:
    ingest([{"type": "track", "userId": f"u{i}", "event": "Seen"} for i in range(50)])
    busy, frames, folded = SQLiteCheckpointer(database).checkpoint_once()
    assert busy == 0
    assert frames > 0
    assert folded == frames


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
