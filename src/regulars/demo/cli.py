"""`regulars demo`: fill the database with Lantern Coffee Roasters, a believable store, and
`regulars simulate`: move it forward in simulated time.

The admin API key is printed as the last line of `regulars demo`, alone, so scripts can
`tail -1` it. Each simulated step is its own transactions: this loop is their boundary.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import typer
from rich.console import Console
from rich.table import Table

from regulars.db import session_scope
from regulars.demo import service, simulation
from regulars.demo.generator import STORE
from regulars.kit import clock

# The demo's own days go by in two-hour steps: twice as fast as `simulate`'s hour, and fine
# for a history (a reminder "an hour later" goes at the next step).
DEMO_STEP = timedelta(hours=2)


def demo(
    seed: int = typer.Option(1, help="Same seed, same store: every choice is drawn from it."),
    customers: int = typer.Option(2000, min=1, help="Known customers (plus 20% anonymous)."),
    months: int = typer.Option(12, min=1, max=60, help="Months of history before now."),
    simulate_days: int = typer.Option(
        7,
        "--simulate-days",
        min=0,
        max=60,
        help="Of which the last days are simulated with every journey live (0: none).",
    ),
    force: bool = typer.Option(False, "--force", help="Load even if there are customers."),
    if_empty: bool = typer.Option(
        False, "--if-empty", help="Do nothing (and succeed) when there are customers already."
    ),
) -> None:
    """Load a demo store: customers in 9 time zones, orders, returns; journeys with runs."""
    console = Console(stderr=True)
    if if_empty:
        with session_scope(readonly=True) as session:
            if service.has_customers(session):
                console.print("The database has customers already: the demo is not loaded again.")
                return
    started = time.perf_counter()
    start = (clock.now() - timedelta(days=simulate_days)).replace(second=0, microsecond=0)
    loading = f"Loading {STORE} ({customers} customers, {months} months)..."
    with console.status(loading), clock.frozen(start), session_scope() as session:
        summary = service.load(
            session, seed=seed, customers=customers, months=months, now=start, force=force
        )
        summary.journeys = service.install_journeys(session)
        source_name = summary.source.name if summary.source else service.SOURCE_NAME
    out = _out()
    out.print(
        f"Loaded {STORE} in {time.perf_counter() - started:.1f} s under source "
        f"[bold]{source_name}[/bold]:"
    )
    _print_summary(out, summary, simulate_days)
    if simulate_days:
        _live_through(out, seed=seed, days=simulate_days, start=start)
        out.print(f"Done in {time.perf_counter() - started:.1f} s (regulars journeys list).")
    out.print("Admin API key (shown once):")
    typer.echo(summary.api_key)


def _live_through(out: Console, *, seed: int, days: int, start: datetime) -> None:
    """The days after the history, up to now, with every journey live."""
    with session_scope(readonly=True) as session:
        moving = simulation.begin(session, seed=seed, days=days, step=DEMO_STEP, now=start)
    out.print(f"Simulating the last {days} days, every journey live:")
    _simulate(moving, out=out, speed=None)


def _print_summary(out: Console, summary: service.DemoSummary, simulate_days: int) -> None:
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
            f"  newsletter {reached:>10,}  sent {7 + simulate_days} days ago, {opened:,} opened, "
            f"{newsletter.get('clicked', 0):,} clicked (regulars broadcasts list)"
        )
    out.print(f"  journeys   {len(summary.journeys):>10,}  live (regulars journeys list)")
    if summary.staff:
        domain = summary.staff[0][0].partition("@")[2]
        roles = ", ".join(f"{email.partition('@')[0]}@" for email, _role in summary.staff)
        out.print(
            f"  staff      {len(summary.staff):>10,}  {roles}{domain} "
            f"(password {service.DEMO_STAFF_PASSWORD})"
        )
    if summary.rejected:
        out.print(f"  [red]rejected   {summary.rejected:>10,}[/red]")


def simulate(
    days: int = typer.Option(..., "--days", min=1, max=366, help="Simulated days to move on."),
    speed: float | None = typer.Option(
        None,
        "--speed",
        min=1,
        help="Simulated seconds per real second (3600: an hour a second); default: flat out.",
    ),
    seed: int = typer.Option(1, help="Same seed, same simulation: every choice is drawn from it."),
    step_minutes: int = typer.Option(
        60, "--step-minutes", min=5, max=240, help="Simulated minutes per step (coarser: faster)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Move the store N days forward in simulated time: customers visit, order, abandon
    checkouts, return parcels; every journey and the worker run at each step."""
    out = _out(stderr=as_json)
    with session_scope(readonly=True) as session:
        moving = simulation.begin(
            session, seed=seed, days=days, step=timedelta(minutes=step_minutes), now=clock.now()
        )
    out.print(
        f"Simulating {STORE} from {moving.start:%Y-%m-%d %H:%M} to {moving.end:%Y-%m-%d %H:%M} "
        f"UTC, {step_minutes}-minute steps:"
    )
    started = time.perf_counter()
    progress = _simulate(moving, out=out, speed=speed, table=not as_json)
    plural = "s" if days != 1 else ""
    out.print(f"Simulated {days} day{plural} in {time.perf_counter() - started:.1f} s.")
    if as_json:
        typer.echo(json.dumps(progress.as_json(moving), indent=2))


@dataclass
class _Progress:
    """What the steps did, by simulated day."""

    days: list[dict[str, object]] = field(default_factory=list)
    totals: list[simulation.JourneyTotals] = field(default_factory=list)
    day: dict[str, int] = field(default_factory=dict)

    def add(self, report: simulation.StepReport) -> None:
        for name, value in asdict(report).items():
            self.day[name] = self.day.get(name, 0) + value

    def as_json(self, moving: simulation.Simulation) -> dict[str, object]:
        return {
            "start": moving.start.isoformat(),
            "end": moving.end.isoformat(),
            "days": self.days,
            "journeys": [asdict(t) for t in self.totals],
        }


def _simulate(
    moving: simulation.Simulation, *, out: Console, speed: float | None, table: bool = True
) -> _Progress:
    """Every step in its own transactions, paced by `speed`; a line per simulated day, then
    a table per journey."""
    worker = simulation.make_worker()
    progress = _Progress(totals=_totals())
    day_ends = moving.start + timedelta(days=1)
    for at in moving.moments():
        began = time.perf_counter()
        with simulation.at_moment(moving, at):
            with session_scope() as session:
                progress.add(simulation.step(session, moving, at=at))
            simulation.settle(worker, at=at)
        if at >= day_ends or at == moving.end:
            _end_of_day(out, progress, at, number=len(progress.days) + 1)
            day_ends += timedelta(days=1)
        if speed:
            time.sleep(max(0.0, moving.step.total_seconds() / speed - time.perf_counter() + began))
    if table:
        _print_totals(out, progress.totals)
    return progress


def _totals() -> list[simulation.JourneyTotals]:
    with session_scope(readonly=True) as session:
        return simulation.totals(session)


def _end_of_day(out: Console, progress: _Progress, at: datetime, *, number: int) -> None:
    before = {t.key: t for t in progress.totals}
    progress.totals = _totals()
    runs = sum(t.runs - (before[t.key].runs if t.key in before else 0) for t in progress.totals)
    sent = sum(
        t.messages - (before[t.key].messages if t.key in before else 0) for t in progress.totals
    )
    day = progress.day
    progress.days.append({"day": number, "at": at.isoformat(), "runs_started": runs,
                          "messages": sent, **day})  # fmt: skip
    news = [
        f"{what} to {day[key]:,}"
        for key, what in (("alerted", "service alert"), ("announced", "new collection"))
        if day.get(key)
    ]
    out.print(
        f"  day {number:>2}  {at:%a %Y-%m-%d}  events {day.get('events', 0):>6,}  "
        f"sign-ups {day.get('signed_up', 0):>3}  runs started {runs:>5,}  messages {sent:>5,}  "
        f"opened {day.get('opened', 0):>4,}  clicked {day.get('clicked', 0):>4,}"
        + (f"  ({', '.join(news)})" if news else "")
    )
    progress.day = {}


def _print_totals(out: Console, totals: list[simulation.JourneyTotals]) -> None:
    if not totals:
        out.print(
            "No journeys: `regulars journeys install KEY` (or `regulars journeys blueprints`)."
        )
        return
    grid = Table(box=None, pad_edge=False)
    columns = ("journey", "runs", "waiting", "active", "completed", "exited", "control")
    for name in (*columns, "messages", "goals", "revenue"):
        grid.add_column(name, justify="left" if name == "journey" else "right")
    for t in totals:
        grid.add_row(
            t.key,
            *(f"{n:,}" for n in (t.runs, t.waiting, t.active, t.completed, t.exited, t.control)),
            f"{t.messages:,}",
            f"{t.conversions:,}" if t.goal else "-",
            f"{t.revenue:,.2f}" if t.goal else "-",
        )
    out.print(grid)


def _out(*, stderr: bool = False) -> Console:
    """Lines as wide as they are when not on a terminal (pasted, piped, logged)."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 200)
