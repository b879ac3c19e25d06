"""`regulars sources ...`, `regulars apikeys ...` and `regulars users ...`: write keys, API keys
and the dashboard's staff users.

A new secret is printed as the last line of output, alone, so scripts can take it with `tail -1`.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table

from regulars.db import session_scope
from regulars.identity import service, staff
from regulars.identity.models import ApiKeyScope, Role

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


users_app = typer.Typer(
    help="Staff users of the dashboard: owner, admin, marketer, agent, analyst."
)
PASSWORD_HELP = "Leave out to have one generated and printed once."


def _password_or_generated(password: str | None) -> tuple[str, bool]:
    return (password, False) if password else (staff.generate_password(), True)


@users_app.command("create")
def create_user(
    email: str = typer.Argument(..., help="The sign-in email, unique."),
    name: str = typer.Option(..., "--name", help="How the dashboard shows this person."),
    role: Role = typer.Option(Role.AGENT, "--role", help="What they may do (docs/access.md)."),
    password: str | None = typer.Option(None, "--password", help=PASSWORD_HELP),
) -> None:
    """Create a staff user. A generated password is printed as the last line, alone."""
    chosen, generated = _password_or_generated(password)
    with session_scope() as session:
        user = staff.create_user(session, email, name=name, role=role, password=chosen)
        user_id, user_email = user.id, user.email
    _console().print(f"Created {role.value} [bold]{user_email}[/bold] ({user_id}).")
    if generated:
        _console().print("Their password, shown once:")
        typer.echo(chosen)


@users_app.command("list")
def list_users() -> None:
    """List staff users with their role, last sign-in and whether they are disabled."""
    table = Table("id", "email", "name", "role", "last sign-in", "disabled at")
    with session_scope(readonly=True) as session:
        for user in staff.list_users(session):
            table.add_row(
                user.id,
                user.email,
                user.name,
                user.role,
                _when(user.last_login_at),
                _when(user.disabled_at),
            )
    _console().print(table)


@users_app.command("set-role")
def set_role(
    user: str = typer.Argument(..., help="Email or id."),
    role: Role = typer.Argument(..., help="owner, admin, marketer, agent or analyst."),
) -> None:
    """Change a user's role (the last active owner cannot stop being one)."""
    with session_scope() as session:
        found = staff.set_role(session, user, role)
        email = found.email
    _console().print(f"{email} is now {role.value}.")


@users_app.command("disable")
def disable_user(user: str = typer.Argument(..., help="Email or id.")) -> None:
    """Disable a user and sign them out everywhere; `enable` undoes it."""
    with session_scope() as session:
        email = staff.disable_user(session, user).email
    _console().print(f"Disabled {email}; their sessions are ended.")


@users_app.command("enable")
def enable_user(user: str = typer.Argument(..., help="Email or id.")) -> None:
    """Let a disabled user sign in again."""
    with session_scope() as session:
        email = staff.enable_user(session, user).email
    _console().print(f"Enabled {email}.")


@users_app.command("reset-password")
def reset_password(
    user: str = typer.Argument(..., help="Email or id."),
    password: str | None = typer.Option(None, "--password", help=PASSWORD_HELP),
) -> None:
    """Set a new password and sign the user out everywhere."""
    chosen, generated = _password_or_generated(password)
    with session_scope() as session:
        email = staff.reset_password(session, user, chosen).email
    _console().print(f"Reset the password of {email}; their sessions are ended.")
    if generated:
        _console().print("The new password, shown once:")
        typer.echo(chosen)
