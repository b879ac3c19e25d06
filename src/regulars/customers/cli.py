"""`regulars customers ...`: look at profiles from a terminal. `import_app` is the
`regulars import ...` group; its commands are registered by customers/importer.py."""

from __future__ import annotations

import sys

import orjson
import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from regulars.customers import importer, service
from regulars.customers.rules import MessageInvalid, display_name, normalise_email
from regulars.customers.schemas import ConsentRead, CustomerQuery, CustomerRead, EventRead
from regulars.db import session_scope
from regulars.errors import NotFound, ValidationFailed

app = typer.Typer(help="Customers: profiles, facts, consents and timelines.", no_args_is_help=True)
import_app = typer.Typer(
    help="Import customers and events from CSV or JSONL files.", no_args_is_help=True
)
importer.register(import_app)

SHOWN_EVENTS = 10


def _console() -> Console:
    # Wide when piped, so ids are never cut or folded in the middle.
    return Console(width=None if sys.stdout.isatty() else 200)


def _text(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _profile(customer: CustomerRead) -> Table:
    table = Table.grid(padding=(0, 2))
    name = display_name(customer.first_name, customer.last_name)
    rows = {
        "id": customer.id,
        "external id": customer.external_id,
        "name": name,
        "email": customer.email,
        "phone": customer.phone,
        "locale": customer.locale,
        "time zone": customer.timezone,
        "anonymous ids": ", ".join(customer.anonymous_ids),
        "traits": orjson.dumps(customer.traits, option=orjson.OPT_SORT_KEYS).decode(),
        "created at": customer.created_at,
        "updated at": customer.updated_at,
    }
    for label, value in rows.items():
        table.add_row(f"[bold]{label}[/bold]", _text(value))
    return table


def _facts(customer: CustomerRead) -> Table:
    facts = customer.facts
    table = Table.grid(padding=(0, 2))
    average = facts.average_order_value
    rows = {
        "orders": facts.orders_count,
        "revenue": f"{facts.revenue_total:.2f}",
        "average order": None if average is None else f"{average:.2f}",
        "first / last order": f"{_text(facts.first_order_at)} / {_text(facts.last_order_at)}",
        "refunds": f"{facts.refunds_count} ({facts.refunded_total:.2f})",
        "events": facts.events_count,
        "first / last seen": f"{_text(facts.first_seen_at)} / {_text(facts.last_seen_at)}",
    }
    rows.update({f"'{name}' events": n for name, n in sorted(facts.event_counts.items())})
    for label, value in rows.items():
        table.add_row(f"[bold]{label}[/bold]", _text(value))
    return table


def _consents(consents: list[ConsentRead]) -> Table:
    table = Table("channel", "topic", "status", "source", "updated at", box=None)
    for consent in consents:
        table.add_row(
            consent.channel,
            consent.topic or "(all)",
            consent.status,
            consent.source,
            str(consent.updated_at),
        )
    return table


def _events(events: list[EventRead]) -> Table:
    table = Table("timestamp", "type", "name", "properties", box=None)
    for event in events:
        properties = orjson.dumps(event.properties, option=orjson.OPT_SORT_KEYS).decode()
        table.add_row(str(event.timestamp), event.type, _text(event.name), properties[:80])
    return table


@app.command("show")
def show(
    reference: str = typer.Argument(..., metavar="ID", help="Customer id, external id or email."),
) -> None:
    """Show one customer: profile, facts, consents and the last 10 events."""
    with session_scope(readonly=True) as session:
        customer_id = service.find_customer(session, reference)
        customer = None if customer_id is None else service.get_customer(session, customer_id)
        if customer is None:
            raise NotFound(f"no customer has the id, external id or email {reference!r}")
        page = service.list_events(session, customer.id, limit=SHOWN_EVENTS)
    events = [] if page is None else page.items
    console = _console()
    console.print(
        Panel(_profile(customer), title=f"Customer {customer.id}", title_align="left", expand=False)
    )
    console.print(Panel(_facts(customer), title="Facts", title_align="left", expand=False))
    console.print(
        Panel(_consents(customer.consents), title="Consents", title_align="left", expand=False)
    )
    title = f"Last {len(events)} events" if events else "No events"
    console.print(Panel(_events(events), title=title, title_align="left", expand=False))


@app.command("list")
def list_customers(
    email: str | None = typer.Option(None, help="Only customers with this exact email."),
    limit: int = typer.Option(20, min=1, max=200, help="How many, newest first."),
) -> None:
    """List the newest customers."""
    try:
        query = CustomerQuery(email=None if email is None else normalise_email(email))
    except MessageInvalid as exc:
        raise ValidationFailed(exc.reason.removeprefix("traits.")) from exc
    with session_scope(readonly=True) as session:
        page = service.list_customers(session, query, cursor=None, limit=limit)
    table = Table("id", "external id", "email", "name", "orders", "revenue", "last seen at")
    for customer in page.items:
        name = display_name(customer.first_name, customer.last_name)
        table.add_row(
            customer.id,
            _text(customer.external_id),
            _text(customer.email),
            _text(name),
            str(customer.facts.orders_count),
            f"{customer.facts.revenue_total:.2f}",
            _text(customer.facts.last_seen_at),
        )
    _console().print(table)
