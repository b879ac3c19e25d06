"""A real server (`regulars serve`, embedded worker, a small demo store on SQLite) and real
Chromium (Debian's, driven by Playwright) for the dashboard's browser tests. Screenshots of
every page visited go to $REGULARS_SCREENSHOTS (default: screenshots/ at the repository root).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from regulars.demo.service import DEMO_STAFF_PASSWORD, staff_email
from regulars.identity.models import Role

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(os.environ.get("REGULARS_SCREENSHOTS", ROOT / "screenshots"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _regulars(*args: str, env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "regulars", *args]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)


def _wait_until_up(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    # Polls the real server's health until it answers: the only wait here, on a process.
    for _ in range(600):
        if server.poll() is not None:
            tail = log.read_text()[-3000:]
            raise RuntimeError(f"regulars serve exited with {server.returncode}:\n{tail}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("regulars serve did not come up in 60 s")


@dataclass(frozen=True)
class Served:
    url: str
    database: Path

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """Read the server's database directly: what a page should show comes from here."""
        with closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)) as connection:
            return connection.execute(sql, params).fetchall()


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("browser")
    database, log = folder / "regulars.db", folder / "serve.log"
    env = {
        **os.environ,
        "REGULARS_DATABASE_URL": f"sqlite:///{database}",
        "REGULARS_WORKER_POLL_SECONDS": "0.2",
    }
    _regulars("db", "upgrade", env=env)
    _regulars("demo", "--customers", "120", "--months", "3", "--simulate-days", "1", env=env)
    port = _free_port()
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "regulars", "serve", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, server, log)
        yield Served(url, database)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def new_page(browser: Browser, served: Served) -> Iterator[Page]:
    context = browser.new_context(base_url=served.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def sign_in(page: Page, role: Role) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(staff_email(role))
    page.get_by_label("Password").fill(DEMO_STAFF_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login" not in url)


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
