"""`regulars analytics ...`: the dashboard overview's figures from a terminal."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table

from regulars.analytics import service
from regulars.db import session_scope
from regulars.kit import clock

app = typer.Typer(help="Analytics: the dashboard overview's figures.", no_args_is_help=True)


@app.command("refresh")
def refresh(
    full: bool = typer.Option(
        False, "--full", help="Count every day of the window again, settled days included."
    ),
) -> None:
    """Compute and store the overview's figures now (the worker does it every minute)."""
    with session_scope() as session:
        summary = service.refresh(session, now=clock.now(), full=full)
    console = Console(width=None if sys.stdout.isatty() else 200)
    kind = "every day counted" if full else "settled days kept"
    console.print(f"overview as of {summary.computed_at:%Y-%m-%d %H:%M} UTC ({kind})")
    console.print(f"customers: {summary.customers:,}")
    console.print(f"active in {service.DAYS} days: {summary.active:,}")
    console.print(f"orders: {summary.orders:,}, revenue {summary.revenue_cents / 100:,.2f}")
    console.print(f"events in {service.DAYS} days: {summary.events:,}")
    for channel, counts in sorted(summary.messages.items()):
        by_status = ", ".join(f"{status} {n:,}" for status, n in sorted(counts.items()))
        console.print(f"messages in {service.DAYS} days, {channel}: {by_status}")
    table = Table("day", "events", "orders", "revenue", box=None)
    for day, events, orders, cents in zip(
        summary.days,
        summary.events_per_day,
        summary.orders_per_day,
        summary.revenue_per_day_cents,
        strict=True,
    ):
        table.add_row(day, f"{events:,}", f"{orders:,}", f"{cents / 100:,.2f}")
    console.print(table)
