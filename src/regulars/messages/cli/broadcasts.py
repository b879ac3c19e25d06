"""`regulars broadcasts`: list, show, create and cancel messages to a whole segment."""

from __future__ import annotations

from collections.abc import Mapping

import typer
from rich.text import Text

from regulars.db import session_scope
from regulars.errors import NotFound
from regulars.messages import service
from regulars.messages.cli.common import (
    JSON,
    ROUTE,
    Route,
    cell,
    console,
    echo_json,
    grid,
    group,
    new_table,
    validated,
)
from regulars.messages.models import DeliveryStatus
from regulars.messages.schemas import BroadcastCreate, BroadcastRead

broadcasts_app = group("Broadcasts: one message to a whole segment.")


def _progress(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{status} {n}" for status, n in sorted(counts.items())) or "-"


@broadcasts_app.command("list")
def list_broadcasts(
    limit: int = typer.Option(50, "--limit", min=1, max=200, help="How many, newest first."),
    as_json: bool = JSON,
) -> None:
    """Recent broadcasts with their audience and progress."""
    with session_scope(readonly=True) as session:
        found = service.list_broadcasts(session, limit=limit)
    if as_json:
        echo_json(found)
        return
    table = new_table("id", "name", "template", "segment", "channel", "status", "send at")
    table.add_column("audience")
    table.add_column("progress")
    for b in found:
        row = (b.id, b.name, b.template, b.segment, b.channel, b.status, b.send_at, b.audience)
        table.add_row(*map(cell, (*row, _progress(b.progress))))
    console().print(table)


@broadcasts_app.command("show")
def show_broadcast(
    broadcast_id: str = typer.Argument(..., metavar="ID"), as_json: bool = JSON
) -> None:
    """One broadcast and its deliveries counted by status."""
    with session_scope(readonly=True) as session:
        found = service.get_broadcast(session, broadcast_id)
    if found is None:
        raise NotFound(f"no broadcast {broadcast_id!r}")
    if as_json:
        echo_json(found)
        return
    _print_broadcast(found)


def _print_broadcast(b: BroadcastRead) -> None:
    out = console()
    rows: dict[str, object] = {
        "id": b.id,
        "name": b.name,
        "template": b.template,
        "segment": b.segment,
        "channel": b.channel,
        "status": b.status,
        "send at": b.send_at,
        "local time": b.local_time,
        "throttle": None if b.throttle_per_minute is None else f"{b.throttle_per_minute}/minute",
        "audience": b.audience,
        "started at": b.started_at,
        "finished at": b.finished_at,
        "cancelled at": b.cancelled_at,
    }
    out.print(grid(rows))
    progress = new_table("status", "deliveries")
    for status in DeliveryStatus:  # in the order a delivery goes through them
        if b.progress.get(status):
            progress.add_row(cell(status), cell(b.progress[status]))
    out.print(progress if b.progress else Text("no deliveries yet"))


@broadcasts_app.command("create")
def create_broadcast(
    name: str = typer.Argument(..., help="Name people see, e.g. 'Summer sale'."),
    template: str = typer.Option(..., "--template", help="Template key."),
    segment: str = typer.Option(..., "--segment", help="Segment key."),
    channel: Route = ROUTE,
    at: str | None = typer.Option(
        None, "--at", metavar="ISO", help="When, with a zone: 2026-12-01T09:00:00Z. Default now."
    ),
    local_time: str | None = typer.Option(
        None, "--local-time", metavar="HH:MM", help="At this time in each customer's zone."
    ),
    throttle: int | None = typer.Option(None, "--throttle", help="At most N per minute."),
    as_json: bool = JSON,
) -> None:
    """Send a template to every member of a segment, now or later."""
    request = {"name": name, "template": template, "segment": segment, "channel": channel.value}
    timing = {"send_at": at, "local_time": local_time, "throttle_per_minute": throttle}
    data = validated(BroadcastCreate, {**request, **timing})
    with session_scope() as session:
        made = service.create_broadcast(session, data)
    if as_json:
        echo_json(made)
        return
    typer.echo(f"broadcast {made.id} scheduled for {made.send_at.isoformat(timespec='seconds')}")


@broadcasts_app.command("cancel")
def cancel_broadcast(broadcast_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Stop a broadcast: deliveries not yet handed to a provider are cancelled."""
    with session_scope() as session:
        cancelled = service.cancel_broadcast(session, broadcast_id)
    n = cancelled.progress.get(DeliveryStatus.CANCELLED, 0)
    typer.echo(f"broadcast {broadcast_id} cancelled ({n} deliveries cancelled)")
