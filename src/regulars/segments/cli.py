"""`regulars segments ...`: define, compute, preview and explain segments from a terminal."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from regulars.db import session_scope
from regulars.errors import ValidationFailed
from regulars.segments import service
from regulars.segments.schemas import (
    MEMBER_CSV_HEADER,
    Explanation,
    SegmentCreate,
    SegmentUpdate,
)

app = typer.Typer(help="Segments: groups of customers by rules, kept live.", no_args_is_help=True)


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 200)


def _rule(path: Path) -> dict[str, Any]:
    """A rule from a JSON file ("-" reads standard input)."""
    try:
        raw = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise ValidationFailed(f"cannot read {path}: {exc.strerror}") from exc
    try:
        rule = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed(f"{path} is not JSON: {exc}") from exc
    if not isinstance(rule, dict):
        raise ValidationFailed(f"{path} must hold one JSON object, the rule")
    return rule


RULE_FILE = typer.Option(..., "--rule", help="JSON file with the rule tree; - for stdin.")


@app.command("list")
def list_segments() -> None:
    """Every segment with its member count."""
    table = Table("key", "name", "members", "time", "computed at", "built in", box=None)
    with session_scope(readonly=True) as session:
        cursor: str | None = None
        while True:
            page = service.list_page(session, cursor=cursor, limit=200)
            for s in page.items:
                computed = s.computed_at.isoformat(timespec="seconds") if s.computed_at else "-"
                builtin = "yes" if s.builtin else ""
                table.add_row(
                    s.key, s.name, str(s.members_count), s.time_dependence, computed, builtin
                )
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    _console().print(table)


@app.command("show")
def show(key: str = typer.Argument(..., help="Segment key or id.")) -> None:
    """One segment: its rule and counts."""
    with session_scope(readonly=True) as session:
        segment = service.segment_read(session, service.require(session, key))
    console = _console()
    console.print(f"[bold]{segment.name}[/bold] ({segment.key}, {segment.id})")
    if segment.description:
        console.print(segment.description)
    console.print(f"members: {segment.members_count}   time dependence: {segment.time_dependence}")
    console.print(orjson.dumps(segment.rule, option=orjson.OPT_INDENT_2).decode())


@app.command("create")
def create(
    key: str = typer.Argument(..., help="Stable key: lower case, digits, _ and -."),
    name: str = typer.Option(..., "--name", help="Name people see."),
    rule: Path = RULE_FILE,
    description: str = typer.Option("", "--description"),
) -> None:
    """Save a segment and compute its members."""
    data = SegmentCreate(key=key, name=name, description=description, rule=_rule(rule))
    with session_scope() as session:
        service.create(session, data)
        result = service.compute(session, key)
    typer.echo(f"segment {key} created: {result.members} members")


@app.command("update")
def update(
    key: str = typer.Argument(..., help="Segment key or id."),
    rule: Path = RULE_FILE,
) -> None:
    """Replace a segment's rule and recompute it."""
    with session_scope() as session:
        service.update(session, key, SegmentUpdate(rule=_rule(rule)))
        result = service.compute(session, key)
    typer.echo(f"segment {key} updated: {result.members} members")


@app.command("delete")
def delete(key: str = typer.Argument(..., help="Segment key or id.")) -> None:
    """Delete a segment (refused while another segment refers to it)."""
    with session_scope() as session:
        service.delete(session, key)
    typer.echo(f"segment {key} deleted")


@app.command("compute")
def compute(
    key: str | None = typer.Argument(None, help="Segment key or id; omit with --all."),
    all_segments: bool = typer.Option(False, "--all", help="Compute every segment."),
) -> None:
    """Compute membership now and write the difference (entered, exited)."""
    if (key is None) == (not all_segments):
        raise ValidationFailed("give a segment key, or --all")
    with session_scope() as session:
        if all_segments:
            service.ensure_builtins(session)
            results = service.compute_all(session)
        else:
            results = [service.compute(session, key or "")]
    for r in results:
        typer.echo(f"{r.key}: {r.members} members ({r.entered} entered, {r.exited} exited)")


@app.command("preview")
def preview(
    rule: Path = RULE_FILE,
    sample: int = typer.Option(10, "--sample", min=0, max=100, help="How many to show."),
) -> None:
    """Count and a sample of who a rule holds for, without saving it."""
    with session_scope(readonly=True) as session:
        found = service.preview(session, _rule(rule), sample=sample)
    table = Table("id", "external id", "email", "name", box=None)
    for c in found.sample:
        table.add_row(c.id, c.external_id or "-", c.email or "-", c.name or "-")
    console = _console()
    console.print(f"{found.count} customers")
    if found.sample:
        console.print(table)


@app.command("explain")
def explain(
    key: str = typer.Argument(..., help="Segment key or id."),
    customer_id: str = typer.Argument(..., help="Customer id."),
) -> None:
    """Why a customer is in or out: every condition with what was found."""
    with session_scope(readonly=True) as session:
        found = service.explain(session, customer_id, key_or_id=key)
    _print_explanation(found)


def _print_explanation(found: Explanation) -> None:
    console = _console()
    verdict = "in" if found.holds else "out of"
    console.print(f"customer {found.customer_id} is [bold]{verdict}[/bold] {found.segment}")
    if found.member is not None and found.member != found.holds:
        stored = "a member" if found.member else "not a member"
        console.print(f"(stored: {stored}; the next compute or change brings it in line)")
    for node in found.nodes:
        depth = sum(part in ("rules", "rule") for part in node.path.split("."))
        mark = "[green]yes[/green]" if node.holds else "[red]no[/red] "
        console.print(f"{'  ' * depth}{mark} {node.says}")


@app.command("members")
def members(
    key: str = typer.Argument(..., help="Segment key or id."),
    as_csv: bool = typer.Option(False, "--csv", help="Every member as CSV on stdout."),
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="Rows shown (not --csv)."),
) -> None:
    """List members (or export them all as CSV)."""
    with session_scope(readonly=True) as session:
        if as_csv:
            writer = csv.writer(sys.stdout)
            writer.writerow(MEMBER_CSV_HEADER)
            for member in service.all_members(session, key):
                writer.writerow(member.csv_row())
            return
        page = service.members(session, key, cursor=None, limit=limit)
    table = Table("customer id", "external id", "email", "entered at", box=None)
    for m in page.items:
        table.add_row(m.customer_id, m.external_id or "-", m.email or "-", str(m.entered_at))
    _console().print(table)
