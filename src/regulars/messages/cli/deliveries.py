"""`regulars deliveries`: every message sent or refused, and what became of it."""

from __future__ import annotations

import orjson
import typer

from regulars.db import session_scope
from regulars.errors import NotFound
from regulars.messages import service
from regulars.messages.cli.common import JSON, cell, console, echo_json, grid, group, new_table
from regulars.messages.models import DeliveryStatus, MessageChannel
from regulars.messages.schemas import DeliveryRead

deliveries_app = group("Deliveries: every message and its fate.")


@deliveries_app.command("list")
def list_deliveries(
    customer: str | None = typer.Option(None, "--customer", help="Id, external id or email."),
    channel: MessageChannel | None = typer.Option(None, "--channel"),
    status: DeliveryStatus | None = typer.Option(None, "--status"),
    broadcast: str | None = typer.Option(None, "--broadcast", help="Broadcast id."),
    provider: str | None = typer.Option(None, "--provider", help="sandbox: the sandbox outbox."),
    limit: int = typer.Option(20, "--limit", min=1, max=200, help="How many, newest first."),
    as_json: bool = JSON,
) -> None:
    """Deliveries, newest first."""
    with session_scope(readonly=True) as session:
        page = service.list_deliveries(
            session,
            customer=customer,
            channel=channel,
            status=status,
            broadcast_id=broadcast,
            provider=provider,
            limit=limit,
        )
    if as_json:
        echo_json(page.items)
        return
    table = new_table("id", "created at", "customer", "channel", "template", "status", "address")
    table.add_column("provider")
    table.add_column("reason")
    for d in page.items:
        row = (d.id, d.created_at, d.customer_id, d.channel, d.template, d.status, d.address)
        table.add_row(*map(cell, (*row, d.provider, d.reason)))
    console().print(table)


@deliveries_app.command("show")
def show_delivery(
    delivery_id: str = typer.Argument(..., metavar="ID"),
    html: bool = typer.Option(False, "--html", help="Email: print the HTML too."),
    as_json: bool = JSON,
) -> None:
    """One delivery with its rendered content."""
    with session_scope(readonly=True) as session:
        found = service.get_delivery(session, delivery_id, with_content=True)
    if found is None:
        raise NotFound(f"no delivery {delivery_id!r}")
    if as_json:
        echo_json(found)
        return
    _print_delivery(found, html=html)


def _print_delivery(d: DeliveryRead, *, html: bool) -> None:
    template = None if d.template is None else f"{d.template} version {d.template_version}"
    provider = d.provider and f"{d.provider} ({d.provider_message_id or 'no message id'})"
    rows: dict[str, object] = {
        "id": d.id,
        "customer": d.customer_id,
        "channel": d.channel,
        "category": d.category if not d.topic else f"{d.category}, topic {d.topic}",
        "template": template,
        "locale": d.locale,
        "status": d.status,
        "reason": d.reason,
        "address": d.address,
        "provider": provider,
        "attempts": d.attempts,
        "broadcast": d.broadcast_id,
    }
    times = {
        "created at": d.created_at,
        "next attempt at": d.next_attempt_at,
        "expires at": d.expires_at,
        "sent at": d.sent_at,
        "delivered at": d.delivered_at,
        "opened at": d.opened_at,
        "clicked at": d.clicked_at,
    }
    rows.update({label: at for label, at in times.items() if at is not None})
    console().print(grid(rows))
    for field, value in (d.content or {}).items():
        if field == "html" and not html:
            typer.echo(f"html: {len(str(value))} characters (--html prints it)")
        elif isinstance(value, str) and "\n" in value.strip():
            typer.echo(f"{field}:\n{value.rstrip()}")
        else:
            typer.echo(
                f"{field}: {value if isinstance(value, str) else orjson.dumps(value).decode()}"
            )
