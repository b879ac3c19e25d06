"""Storage plumbing: the SQLite writer queue and the background checkpoint."""

from __future__ import annotations

import fcntl
import os
import threading

import pytest

from regulars.db import Database, SQLiteCheckpointer, SQLiteWriterQueue
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
