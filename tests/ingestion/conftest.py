"""An app and a source with its write key, on the test database."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from regulars.app import create_app
from regulars.db import Database, session_scope
from regulars.identity.service import create_source


@pytest.fixture
def app(database: Database) -> FastAPI:
    return create_app(with_worker=False)


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    return TestClient(app)


@pytest.fixture
def write_key(database: Database) -> str:
    with session_scope() as session:
        return create_source(session, "website").write_key


@pytest.fixture
def server_url(app: FastAPI) -> Iterator[str]:
    """A real uvicorn server on a free loopback port, serving the app against the test database."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.01)  # readiness poll of a real server, bounded by the deadline
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
