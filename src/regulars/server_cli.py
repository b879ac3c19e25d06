"""`regulars serve`, `regulars worker` and `regulars db upgrade`: the process entry points."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import threading
from functools import partial
from types import FrameType

import typer
from rich.console import Console
from rich.logging import RichHandler
from sqlalchemy.engine import make_url

from regulars.config import get_settings
from regulars.errors import ValidationFailed
from regulars.kit import runtime

console = Console()
db_app = typer.Typer(no_args_is_help=True)


@db_app.callback()
def db() -> None:
    """Database schema: create it, migrate it."""


def _configure_logging() -> None:
    logging.basicConfig(
        level=get_settings().log_level.upper(),
        format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )


def _shown_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def serve(
    host: str | None = typer.Option(None, help="Interface to bind (default: REGULARS_HOST)."),
    port: int | None = typer.Option(None, help="Port (default: REGULARS_PORT)."),
    with_worker: bool | None = typer.Option(
        None,
        "--with-worker/--without-worker",
        help="Run the background worker in this process (default: yes on SQLite, no otherwise).",
    ),
    workers: int | None = typer.Option(
        None, min=1, max=64, help="Server processes (default: REGULARS_WEB_WORKERS)."
    ),
) -> None:
    """Serve the API, ingestion endpoints and pages (and, embedded, the background worker)."""
    import uvicorn

    from regulars.app import create_server_app

    settings = get_settings()
    host, port = host or settings.host, port or settings.port
    workers = workers or settings.web_workers
    embedded = _embedded_worker(with_worker, workers=workers)
    console.print(f"[bold]regulars[/bold] on [link]http://{host}:{port}/[/link]")
    console.print(f"  dashboard   http://{host}:{port}/login (regulars users create to add staff)")
    console.print(f"  API docs    http://{host}:{port}/api/docs")
    console.print(f"  database    {_shown_url(settings.database_url)}")
    console.print("  worker      " + ("embedded" if embedded else "run `regulars worker`"))
    if workers > 1:
        console.print(f"  processes   {workers}")
        os.environ["REGULARS_EMBEDDED_WORKER"] = "false"  # read by each server process
        app: object = "regulars.app:create_server_app"
    else:
        app = partial(create_server_app, with_worker=with_worker)
    uvicorn.run(
        app,  # type: ignore[arg-type]
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
    )


def _embedded_worker(with_worker: bool | None, *, workers: int) -> bool:
    """Several server processes never each run a worker: `regulars worker` runs beside them."""
    if workers == 1:
        return get_settings().runs_embedded_worker if with_worker is None else with_worker
    if with_worker:
        raise ValidationFailed("--with-worker needs --workers 1; run `regulars worker` beside")
    return False


def _stop_on_signals(stop: threading.Event) -> None:
    """The first SIGTERM or SIGINT stops after the current job; a second SIGINT kills."""

    def _handle(signum: int, _frame: FrameType | None) -> None:
        console.print(f"{signal.Signals(signum).name}: stopping after the current job")
        stop.set()
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)


def worker(
    concurrency: int = typer.Option(1, "--concurrency", "-c", min=1, help="Worker threads."),
    batch_size: int | None = typer.Option(
        None, min=1, help="Jobs claimed at once (default: REGULARS_WORKER_BATCH_SIZE)."
    ),
    include: list[str] = typer.Option(
        [], "--include", "-I", help="Also import this module of tasks (repeatable)."
    ),
) -> None:
    """Run background jobs until SIGTERM or Ctrl-C; start as many as you like on PostgreSQL."""
    from regulars.db import SQLiteCheckpointer, get_database
    from regulars.jobs import service
    from regulars.worker import Worker, new_worker_id, run_pool

    settings = get_settings()
    if settings.is_sqlite and concurrency > 1:
        raise ValidationFailed("SQLite runs one worker thread; use PostgreSQL for --concurrency")
    _configure_logging()
    service.discover()
    for module in include:
        importlib.import_module(module)
    workers = [
        Worker(worker_id=new_worker_id(i), batch_size=batch_size) for i in range(concurrency)
    ]
    stop = threading.Event()
    _stop_on_signals(stop)
    runtime.settle_heap()
    console.print(
        f"worker {workers[0].worker_id} started: {concurrency} thread(s), "
        f"{len(service.registry.kinds)} job kinds, database {_shown_url(settings.database_url)}"
    )
    # A worker beside no server still folds the WAL off the write lock (nothing on PostgreSQL).
    with SQLiteCheckpointer(get_database()):
        run_pool(workers, stop)
    console.print("worker stopped")


@db_app.command("upgrade")
def upgrade() -> None:
    """Create or migrate the database schema to the latest version."""
    from regulars import migrate

    url = get_settings().database_url
    migrate.upgrade(url)
    console.print(f"database {_shown_url(url)} is at {', '.join(migrate.heads(url))}")
