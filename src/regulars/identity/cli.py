"""`regulars sources ...` and `regulars apikeys ...`: write keys and API keys.

A new secret is printed as the last line of output, alone, so scripts can take it with `tail -1`.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table

from regulars.db import session_scope
from regulars.identity import service
from regulars.identity.models import ApiKeyScope

sources_app = typer.Typer(help="Sources: where tracking calls come from, each with a write key.")
apikeys_app = typer.Typer(help="API keys for the REST API (read, write or admin).")


def _console() -> Console:
    # Wide when piped, so ids and keys are never cut or folded in the middle.
    return Console(width=None if sys.stdout.isatty() else 200)


def _when(value: object) -> str:
    return "-" if value is None else str(value)


@sources_app.command("create")
def create_source(name: str = typer.Argument(..., help="A unique name, e.g. web or ios.")) -> None:
    """Create a source and print its write key (the HTTP Basic user of /v1/*)."""
    with session_scope() as session:
        source = service.create_source(session, name)
        source_id, write_key = source.id, source.write_key
    console = _console()
    console.print(f"Created source [bold]{name}[/bold] ({source_id}). Its write key:")
    typer.echo(write_key)


@sources_app.command("list")
def list_sources() -> None:
    """List sources with their write keys."""
    table = Table("id", "name", "write key", "created at", "disabled at")
    with session_scope(readonly=True) as session:
        for source in service.list_sources(session):
            table.add_row(
                source.id,
                source.name,
                source.write_key,
                _when(source.created_at),
                _when(source.disabled_at),
            )
    _console().print(table)


@apikeys_app.command("create")
def create_api_key(
    name: str = typer.Argument(..., help="What the key is for, e.g. crm-sync."),
    scope: ApiKeyScope = typer.Option(
        ApiKeyScope.READ, "--scope", help="read < write < admin; each includes the lower ones."
    ),
) -> None:
    """Create an API key and print it once (only its SHA-256 is kept)."""
    with session_scope() as session:
        api_key, secret = service.create_api_key(session, name, scope)
        api_key_id = api_key.id
    console = _console()
    console.print(
        f"Created API key [bold]{name}[/bold] ({api_key_id}), scope {scope.value}. "
        "It is shown once; keep it now:"
    )
    typer.echo(secret)


@apikeys_app.command("list")
def list_api_keys() -> None:
    """List API keys (their first characters only; the secret is never kept)."""
    table = Table("id", "name", "prefix", "scope", "created at", "last used at", "revoked at")
    with session_scope(readonly=True) as session:
        for api_key in service.list_api_keys(session):
            table.add_row(
                api_key.id,
                api_key.name,
                api_key.prefix + "...",
                api_key.scope,
                _when(api_key.created_at),
                _when(api_key.last_used_at),
                _when(api_key.revoked_at),
            )
    _console().print(table)


@apikeys_app.command("revoke")
def revoke_api_key(api_key_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Revoke an API key: calls with it answer 401 from now on."""
    with session_scope() as session:
        api_key = service.revoke_api_key(session, api_key_id)
        name, revoked_at = api_key.name, api_key.revoked_at
    _console().print(f"Revoked API key {name} ({api_key_id}) at {revoked_at}.")
