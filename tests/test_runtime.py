"""kit/runtime.py: a serving, working or importing process settles its heap once started."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from fastapi.testclient import TestClient

from regulars.app import create_app, create_server_app
from regulars.db import Database
from regulars.kit import runtime


def test_settling_freezes_what_is_alive_and_still_collects_later_cycles() -> None:
    """In a process of its own: freezing is process-wide."""
    script = textwrap.dedent(
        """
        import gc, weakref
        from regulars.kit import runtime

        class Node:
            pass

        alive_before = Node()
        runtime.settle_heap()
        print(gc.get_freeze_count() > 0, gc.get_threshold()[0])
        print(any(o is alive_before for o in gc.get_objects()))
        later = Node()
        later.itself = later
        gone = weakref.ref(later)
        del later
        gc.collect()
        print(gone() is None)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    frozen, threshold, still_scanned, cycle_collected = done.stdout.split()
    assert frozen == "True"
    assert int(threshold) == runtime.YOUNG_GENERATION
    assert still_scanned == "False"  # frozen objects are out of every collection's scan
    assert cycle_collected == "True"


def test_the_server_app_settles_once_started(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    settled: list[str] = []
    monkeypatch.setattr(runtime, "settle_heap", lambda: settled.append("settled"))
    with TestClient(create_app(with_worker=False)) as client:
        assert client.get("/healthz").status_code == 200
    assert settled == []  # an app made for a test leaves the test process as it is
    with TestClient(create_server_app(with_worker=False)) as client:
        assert client.get("/healthz").status_code == 200
    assert len(settled) == 1
