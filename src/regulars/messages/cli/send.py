"""`regulars send`: one message to one customer, through the same policies as the API."""

from __future__ import annotations

import typer

from regulars.db import session_scope
from regulars.messages import service
from regulars.messages.cli.common import (
    EVENT,
    JSON,
    ROUTE,
    Route,
    echo_json,
    event_variables,
    validated,
)
from regulars.messages.models import Category
from regulars.messages.schemas import MessageCreate


def send(
    customer: str = typer.Argument(..., help="Customer id, external id or email."),
    template: str = typer.Argument(..., help="Template key."),
    channel: Route = ROUTE,
    category: Category | None = typer.Option(None, "--category", help="Default: the template's."),
    topic: str | None = typer.Option(None, "--topic", help="Default: the template's."),
    key: str | None = typer.Option(
        None, "--key", help="Idempotency key: sending again with it answers the first delivery."
    ),
    expires_in: int | None = typer.Option(
        None, "--expires-in", metavar="SECONDS", help="Not sent at all after this long."
    ),
    event: str | None = EVENT,
    locale: str | None = typer.Option(None, "--locale", help="Default: the customer's."),
    as_json: bool = JSON,
) -> None:
    """Send one message: prints its delivery id and status (with the reason if refused)."""
    request = {
        "customer": customer,
        "template": template,
        "channel": channel.value,
        "category": category,
        "topic": topic,
        "idempotency_key": key,
        "expires_in_seconds": expires_in,
        "locale": locale,
    }
    data = validated(MessageCreate, {**request, "event": event_variables(event)})
    with session_scope() as session:
        delivery = service.send_message(session, data)
    if as_json:
        echo_json(delivery)
        return
    to = f" to {delivery.address}" if delivery.address else ""
    line = f"delivery {delivery.id}: {delivery.status} ({delivery.channel}{to})"
    typer.echo(f"{line} - {delivery.reason}" if delivery.reason else line)
