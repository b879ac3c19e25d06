"""The `regulars` command: mounts each domain's commands; errors become one line and exit code."""

from __future__ import annotations

import sys

import click
import typer
from rich.console import Console

from regulars.errors import RegularsError

app = typer.Typer(
    name="regulars",
    help="regulars: the open-source customer experience platform.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True, soft_wrap=True)  # one error, one line, whatever the width


_mounted = False


def _mount() -> None:
    """Attach every domain's commands (once; imports stay lazy for a fast `--help`)."""
    global _mounted
    if _mounted:
        return
    _mounted = True
    from regulars.analytics.cli import app as analytics_app
    from regulars.customers.cli import app as customers_app
    from regulars.customers.cli import import_app
    from regulars.demo.cli import demo, simulate
    from regulars.identity.cli import apikeys_app, sources_app, users_app
    from regulars.journeys.cli import app as journeys_app
    from regulars.messages.cli import (
        broadcasts_app,
        deliveries_app,
        providers_app,
        push_app,
        send,
        suppressions_app,
        templates_app,
    )
    from regulars.segments.cli import app as segments_app
    from regulars.server_cli import db_app, serve, worker

    app.command("serve")(serve)
    app.command("worker")(worker)
    app.command("demo")(demo)
    app.command("simulate")(simulate)
    app.add_typer(db_app, name="db")
    app.add_typer(sources_app, name="sources")
    app.add_typer(apikeys_app, name="apikeys")
    app.add_typer(users_app, name="users")
    app.add_typer(import_app, name="import")
    app.add_typer(customers_app, name="customers")
    app.add_typer(segments_app, name="segments")
    app.command("send")(send)
    app.add_typer(templates_app, name="templates")
    app.add_typer(broadcasts_app, name="broadcasts")
    app.add_typer(deliveries_app, name="deliveries")
    app.add_typer(providers_app, name="providers")
    app.add_typer(push_app, name="push")
    app.add_typer(suppressions_app, name="suppressions")
    app.add_typer(journeys_app, name="journeys")
    app.add_typer(analytics_app, name="analytics")


def main() -> None:
    _mount()
    try:
        code = app(standalone_mode=False)
    except RegularsError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        sys.exit(2 if exc.status in (400, 422) else 1)
    except (click.ClickException, typer.TyperException) as exc:
        # Typer carries its own copy of click: usage errors come as either.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:  # pragma: no cover - every click and typer usage error can show itself
            err.print(str(exc))
        sys.exit(int(getattr(exc, "exit_code", 2)))
    except (click.exceptions.Abort, typer.Abort):
        err.print("aborted")
        sys.exit(1)
    # Without standalone mode, click hands back typer.Exit's code instead of exiting with it.
    sys.exit(code if isinstance(code, int) else 0)
