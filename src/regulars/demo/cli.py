"""`regulars demo`: fill the database with Lantern Coffee Roasters, a believable store.

The admin API key is printed as the last line of output, alone, so scripts can `tail -1` it.
"""

from __future__ import annotations

import sys
import time

import typer
from rich.console import Console

from regulars.db import session_scope
from regulars.demo import service
from regulars.demo.generator import STORE
from regulars.kit import clock


def demo(
    seed: int = typer.Option(1, help="Same seed, same store: every choice is drawn from it."),
    customers: int = typer.Option(2000, min=1, help="Known customers (plus 20% anonymous)."),
    months: int = typer.Option(12, min=1, max=60, help="Months of history before now."),
    force: bool = typer.Option(False, "--force", help="Load even if there are customers."),
    if_empty: bool = typer.Option(
        False, "--if-empty", help="Do nothing (and succeed) when there are customers already."
    ),
) -> None:
    """Load a demo store: customers in 9 time zones, page views, carts, orders, refunds."""
    console = Console(stderr=True)
    if if_empty:
        with session_scope(readonly=True) as session:
            if service.has_customers(session):
                console.print("The database has customers already: the demo is not loaded again.")
                return
    started = time.perf_counter()
    loading = f"Loading {STORE} ({customers} customers, {months} months)..."
    with console.status(loading), session_scope() as session:
        summary = service.load(
            session, seed=seed, customers=customers, months=months, now=clock.now(), force=force
        )
        source_name = summary.source.name if summary.source else service.SOURCE_NAME
    elapsed = time.perf_counter() - started
    out = Console(width=None if sys.stdout.isatty() else 200)
    out.print(f"Loaded {STORE} in {elapsed:.1f} s under source [bold]{source_name}[/bold]:")
    out.print(f"  customers  {summary.customers:>10,}")
    out.print(f"  events     {summary.events:>10,}  ({summary.duplicates:,} already there)")
    out.print(f"  orders     {summary.orders:>10,}")
    out.print(f"  revenue    {summary.revenue_cents / 100:>13,.2f} USD")
    out.print(f"  segments   {len(summary.segments):>10,}  (regulars segments list)")
    if summary.messages is not None:
        sent = summary.messages
        newsletter = sent.newsletter or {}
        out.print(f"  templates  {sent.templates:>10,}  (regulars templates list)")
        out.print(f"  messages   {sent.confirmations:>10,}  order confirmations")
        reached = sum(newsletter.values())
        opened = newsletter.get("opened", 0) + newsletter.get("clicked", 0)
        out.print(
            f"  newsletter {reached:>10,}  sent a week ago, {opened:,} opened, "
            f"{newsletter.get('clicked', 0):,} clicked (regulars broadcasts list)"
        )
    if summary.rejected:
        out.print(f"  [red]rejected   {summary.rejected:>10,}[/red]")
    out.print("Admin API key (shown once):")
    typer.echo(summary.api_key)
