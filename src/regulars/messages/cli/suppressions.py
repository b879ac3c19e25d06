"""`regulars suppressions`: the addresses no message goes to (bounces, complaints, STOP
replies), and taking one off the list.
"""

from __future__ import annotations

import typer

from regulars.customers.rules import MessageInvalid, normalise_email
from regulars.db import session_scope
from regulars.errors import NotFound, ValidationFailed
from regulars.messages import service
from regulars.messages.cli.common import JSON, cell, console, echo_json, group, new_table
from regulars.messages.models import MessageChannel

suppressions_app = group("Suppressed addresses: bounces, complaints, STOP replies.")


@suppressions_app.command("list")
def list_suppressions(
    limit: int = typer.Option(100, "--limit", min=1, max=10_000, help="How many, newest first."),
    as_json: bool = JSON,
) -> None:
    """Suppressed addresses, newest first: no message goes to them."""
    with session_scope(readonly=True) as session:
        found = [
            {
                "channel": s.channel,
                "address": s.address,
                "reason": s.reason,
                "delivery_id": s.delivery_id,
                "created_at": s.created_at,
            }
            for s in service.list_suppressions(session, limit=limit)
        ]
    if as_json:
        echo_json(found)
        return
    table = new_table("channel", "address", "reason", "delivery", "created at")
    for row in found:
        table.add_row(*map(cell, row.values()))
    console().print(table)


@suppressions_app.command("remove")
def remove_suppression(
    channel: MessageChannel = typer.Argument(...),
    address: str = typer.Argument(..., help="Email address, phone number (E.164) or endpoint."),
) -> None:
    """Allow messages to an address again (after the person asked, or a fixed mailbox)."""
    if channel == MessageChannel.EMAIL:
        try:
            address = normalise_email(address)
        except MessageInvalid as exc:
            raise ValidationFailed(exc.reason.removeprefix("traits.")) from exc
    with session_scope() as session:
        removed = service.feedback.unsuppress(session, channel, address)
    if not removed:
        raise NotFound(f"{address} is not suppressed on {channel}")
    typer.echo(f"{address} removed from the {channel} suppressions")
