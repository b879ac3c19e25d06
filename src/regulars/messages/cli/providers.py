"""`regulars providers`: list, set and remove the services that carry each channel."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer

from regulars.db import session_scope
from regulars.messages import service
from regulars.messages.cli.common import (
    JSON,
    cell,
    check_key,
    console,
    echo_json,
    group,
    json_object,
    new_table,
    read_text,
    validated,
)
from regulars.messages.models import MessageChannel
from regulars.messages.schemas import ProviderWrite

providers_app = group("Providers: which service carries each channel.")


@providers_app.command("list")
def list_providers(as_json: bool = JSON) -> None:
    """Providers by channel in fail-over order (secrets masked)."""
    with session_scope(readonly=True) as session:
        found = service.providers.list_all(session)
    if as_json:
        echo_json(found)
        return
    table = new_table("name", "channel", "kind", "priority", "enabled", "rate/s", "config")
    for p in found:
        config = orjson.dumps(p.config, option=orjson.OPT_SORT_KEYS).decode()
        enabled = "yes" if p.enabled else "no"
        row = (p.name, p.channel, p.kind, p.priority, enabled, p.rate_per_second, config)
        table.add_row(*map(cell, row))
    console().print(table)


@providers_app.command("set")
def set_provider(
    name: str = typer.Argument(..., help="A unique name, e.g. postmark."),
    channel: MessageChannel = typer.Option(..., "--channel"),
    kind: str = typer.Option(..., "--kind", help="smtp, twilio_sms, webpush, ... or sandbox."),
    config: str = typer.Option(
        "{}",
        "--config",
        help="JSON object; @FILE reads it from a file (keeps secrets out of the shell history).",
    ),
    priority: int = typer.Option(0, "--priority", help="Lowest is tried first."),
    disabled: bool = typer.Option(False, "--disabled", help="Keep it, but do not use it."),
    rate: float | None = typer.Option(None, "--rate", help="At most R messages per second."),
) -> None:
    """Create or replace a provider."""
    check_key(name, "provider name")
    text = read_text(Path(config[1:])) if config.startswith("@") else config
    request = {"channel": channel, "kind": kind, "priority": priority, "enabled": not disabled}
    data = validated(
        ProviderWrite,
        {**request, "config": json_object(text, "--config"), "rate_per_second": rate},
    )
    with session_scope() as session:
        saved = service.providers.save(session, name, data)
    state = "enabled" if saved.enabled else "disabled"
    typer.echo(
        f"provider {name} saved: {saved.channel} via {saved.kind}, "
        f"priority {saved.priority}, {state}"
    )


@providers_app.command("remove")
def remove_provider(name: str = typer.Argument(...)) -> None:
    """Remove a provider (a channel with none left sends to the sandbox)."""
    with session_scope() as session:
        service.providers.delete(session, name)
    typer.echo(f"provider {name} removed")
