"""`regulars journeys ...`: journeys from a terminal, kept as YAML files in a repository if
you like (`export`, edit, `validate`, `import --publish`), their statistics, the runs of a
customer and the path one run took.

Each command is one unit of work (one session_scope). `--json` prints what the REST API
answers, for scripts; the tables are for people. Text written by others (names, event
properties, details) is printed as plain text, never read as Rich markup.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import typer
import yaml
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from regulars.db import session_scope
from regulars.errors import NotFound, ValidationFailed
from regulars.journeys import blueprints, service
from regulars.journeys.graph import DefinitionInvalid, compile_graph
from regulars.journeys.schemas import (
    KEY_PATTERN,
    ArmStats,
    BlueprintRead,
    JourneyCreate,
    JourneyRead,
    JourneyStats,
    JourneyUpdate,
    RunDetail,
    ValidationReport,
)

app = typer.Typer(
    help="Journeys: each customer's way through waits, branches and messages.",
    no_args_is_help=True,
)

JSON = typer.Option(False, "--json", help="Print JSON (the REST API's shape) instead.")
KEY = typer.Argument(..., help="Journey key or id.")


# --- reading files and values ---


def _document(path: Path) -> dict[str, Any]:
    """A YAML or JSON file ("-" reads standard input) as plain JSON values: YAML's dates and
    times become ISO text, as the definition stores them."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationFailed(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ValidationFailed(f"{path} is not UTF-8 text") from exc
    try:
        # JSON first: a JSON file indented with tabs is not YAML.
        found = orjson.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        plain = orjson.loads(orjson.dumps(found))
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise ValidationFailed(f"{path} is not {kind}: {' '.join(str(exc).split())}") from exc
    except TypeError as exc:  # a YAML mapping key that is not text: `yes:` reads as True
        raise ValidationFailed(f"{path}: quote keys such as yes, no and on ({exc})") from exc
    if not isinstance(plain, dict):
        raise ValidationFailed(f"{path} must hold one mapping: key, name and definition")
    return plain


def _journey_file(path: Path) -> JourneyCreate:
    """A journey file; its first problem named by its place in the file."""
    try:
        return JourneyCreate.model_validate(_document(path))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ValidationFailed(f"{path}: {where}: {first['msg']}") from exc


# --- printing ---


def _console() -> Console:
    # Wide when piped, so ids are never cut or folded in the middle.
    return Console(width=None if sys.stdout.isatty() else 200)


def _cell(value: object) -> Text:
    if isinstance(value, datetime):
        value = value.isoformat(timespec="seconds")
    return Text("-" if value is None or value == "" else str(value))


def _table(*columns: str) -> Table:
    return Table(*columns, box=None)


def _grid(rows: Mapping[str, object]) -> Table:
    shown = Table.grid(padding=(0, 2))
    for label, value in rows.items():
        shown.add_row(Text(label, style="bold"), _cell(value))
    return shown


def _echo_json(value: object) -> None:
    def dump(item: BaseModel) -> object:
        return item.model_dump(mode="json")

    typer.echo(orjson.dumps(value, default=dump, option=orjson.OPT_INDENT_2).decode())


def _when(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def _compact(value: object) -> str:
    return "-" if value in (None, [], {}) else orjson.dumps(value).decode()


# --- journeys ---


@app.command("list")
def list_journeys(as_json: bool = JSON) -> None:
    """Every journey with its status and live version."""
    found: list[JourneyRead] = []
    cursor: str | None = None
    with session_scope(readonly=True) as session:
        while True:
            page = service.list_page(session, cursor=cursor, limit=200)
            found += page.items
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    if as_json:
        _echo_json(found)
        return
    table = _table("key", "name", "status", "version", "draft changed", "updated at")
    for j in found:
        changed = "yes" if j.draft_changed and j.live_version else ""
        row = (j.key, j.name, j.status, j.live_version, changed, j.updated_at)
        table.add_row(*map(_cell, row))
    _console().print(table)


@app.command("show")
def show(key: str = KEY, as_json: bool = JSON) -> None:
    """One journey: status, version and a summary of its draft."""
    with session_scope(readonly=True) as session:
        found = service.get(session, key)
    if found is None:
        raise NotFound(f"journey {key!r} not found")
    if as_json:
        _echo_json(found)
        return
    draft = found.draft
    if found.live_version is None:
        draft_state = "not published yet"
    else:
        draft_state = "changed since published" if found.draft_changed else "same as live"
    rows: dict[str, object] = {
        "key": found.key,
        "name": found.name,
        "id": found.id,
        "description": found.description,
        "status": found.status,
        "live version": found.live_version,
        "draft": draft_state,
        "trigger": _compact(draft.get("trigger")),
        "entry": _compact(draft.get("entry")),
        "exit": _compact(draft.get("exit")),
        "goal": _compact(draft.get("goal")),
        "start": draft.get("start"),
        "updated at": found.updated_at,
    }
    out = _console()
    out.print(_grid(rows))
    out.print(_nodes_table(found))


def _nodes_table(found: JourneyRead) -> Table:
    try:
        graph = compile_graph(found.draft)
    except DefinitionInvalid as exc:  # a draft saved before a rule was added may break it
        raise ValidationFailed(f"the draft of {found.key!r} is not well formed: {exc}") from exc
    table = _table("node", "type", "goes to")
    for node_id in graph.order():
        node = graph.nodes[node_id]
        edges = ", ".join(f"{edge} -> {target}" for edge, target in node.successors().items())
        table.add_row(*map(_cell, (node_id, node.kind, edges or "(end)")))
    return table


@app.command("validate")
def validate(
    file_or_key: str = typer.Argument(
        ..., metavar="FILE_OR_KEY", help="A YAML or JSON file (- for stdin), or a journey key."
    ),
    as_json: bool = JSON,
) -> None:
    """Check a journey file, or a journey's draft, with the templates and segments it names.
    Exits 1 when it is not valid, listing each problem with its path."""
    path = Path(file_or_key)
    is_key = re.match(KEY_PATTERN, file_or_key) is not None and not path.is_file()
    with session_scope(readonly=True) as session:
        if is_key:
            report = service.validate(session, file_or_key)
        else:
            document = _document(path)
            definition = document.get("definition", document)
            if not isinstance(definition, dict):
                raise ValidationFailed(f"{path}: definition must be a mapping")
            report = service.validate_definition(session, definition)
    _print_report(file_or_key, report, as_json=as_json)
    if not report.valid:
        raise typer.Exit(1)


def _print_report(what: str, report: ValidationReport, *, as_json: bool) -> None:
    if as_json:
        _echo_json(report)
    elif report.valid:
        typer.echo(f"{what}: valid")
    else:
        typer.echo(f"{what}: {len(report.problems)} problem(s)")
        for problem in report.problems:
            typer.echo(f"  {problem.path or 'definition'}: {problem.message}")


@app.command("import")
def import_journey(
    file: Path = typer.Argument(..., help="YAML or JSON (- for stdin): key, name, definition."),
    publish: bool = typer.Option(False, "--publish", help="Publish it once saved."),
) -> None:
    """Create a journey from a file, or replace its draft when the key exists."""
    data = _journey_file(file)
    with session_scope() as session:
        if service.get(session, data.key) is None:
            saved, what = service.create(session, data), "created as a draft"
        else:
            change = JourneyUpdate(
                name=data.name, description=data.description, definition=data.definition
            )
            saved, what = service.update(session, data.key, change), "draft replaced"
        if publish:
            saved = service.publish(session, data.key)
            what = f"published: version {saved.live_version}"
    typer.echo(f"journey {saved.key} {what}")


@app.command("export")
def export(
    key: str = KEY,
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file."),
) -> None:
    """The journey (its draft) as YAML, which `import` takes back."""
    with session_scope(readonly=True) as session:
        text = service.export_yaml(session, key)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ValidationFailed(f"cannot write {output}: {exc.strerror}") from exc
    typer.echo(f"journey {key} written to {output}", err=True)


@app.command("publish")
def publish(
    key: str = KEY,
    migrate_runs: bool = typer.Option(
        False, "--migrate-runs", help="Move runs in flight to the new version (same node ids)."
    ),
) -> None:
    """Make the draft the next live version (refused, with each problem, when not valid)."""
    with session_scope() as session:
        found = service.publish(session, key, migrate_runs=migrate_runs)
    moved = " (runs in flight moved to it)" if migrate_runs else ""
    typer.echo(f"journey {found.key} published: version {found.live_version}{moved}")


@app.command("pause")
def pause(key: str = KEY) -> None:
    """No new runs start, and runs in flight stand still until resumed."""
    with session_scope() as session:
        found = service.pause(session, key)
    typer.echo(f"journey {found.key} paused")


@app.command("resume")
def resume(key: str = KEY) -> None:
    """A paused journey goes live again; runs whose moment passed move on."""
    with session_scope() as session:
        found = service.resume(session, key)
    typer.echo(f"journey {found.key} resumed")


@app.command("archive")
def archive(key: str = KEY) -> None:
    """Retire a journey: runs in flight end, nothing starts again."""
    with session_scope() as session:
        found = service.archive(session, key)
    typer.echo(f"journey {found.key} archived")


# --- statistics and runs ---


@app.command("stats")
def stats(key: str = KEY, as_json: bool = JSON) -> None:
    """Runs and conversions per node and per arm, with the uplift against the holdout."""
    with session_scope(readonly=True) as session:
        found = service.stats_of(session, key)
    if as_json:
        _echo_json(found)
        return
    _print_stats(found)


def _print_stats(s: JourneyStats) -> None:
    out = _console()
    out.print(
        Text(
            f"{s.key}: version {s.version if s.version is not None else '-'}, {s.runs} runs "
            f"({s.active} in flight, {s.completed} completed, {s.exited} exited), "
            f"{s.conversions} conversions, revenue {s.revenue:.2f}, {s.throttled} throttled"
        )
    )
    nodes = _table("node", "type", "entered", "waiting", "moved on", "exited", "messages")
    nodes.add_column("outcomes")
    for n in s.nodes:
        outcomes = ", ".join(f"{name} {count}" for name, count in sorted(n.outcomes.items()))
        row = (n.node_id, n.type, n.entered, n.waiting, n.moved_on, n.exited, n.messages)
        nodes.add_row(*map(_cell, (*row, outcomes)))
    out.print(nodes)
    if not s.arms:
        return
    arms = _table("arm", "runs", "conversions", "rate", "revenue", "uplift", "95% interval")
    for a in s.arms:
        uplift, interval = _uplift(a)
        rate, revenue = f"{a.conversion_rate:.1%}", f"{a.revenue:.2f}"
        arms.add_row(
            *map(_cell, (a.variant, a.runs, a.conversions, rate, revenue, uplift, interval))
        )
    out.print(arms)


def _uplift(arm: ArmStats) -> tuple[str, str]:
    """Uplift in percentage points, and its 95% interval."""
    if arm.uplift is None or arm.uplift_low is None or arm.uplift_high is None:
        return "-", "-"
    return (
        f"{arm.uplift * 100:+.1f} pts",
        f"{arm.uplift_low * 100:+.1f} to {arm.uplift_high * 100:+.1f} pts",
    )


@app.command("runs")
def runs(
    customer: str = typer.Argument(..., help="Customer id."),
    as_json: bool = JSON,
) -> None:
    """A customer's journey runs, newest first."""
    with session_scope(readonly=True) as session:
        found = service.runs_of_customer(session, customer)
    if as_json:
        _echo_json(found)
        return
    table = _table("run", "journey", "version", "state", "node", "variant", "entered at")
    table.add_column("ended")
    table.add_column("converted at")
    for r in found.items:
        ended = f"{_when(r.ended_at)} ({r.exit_reason})" if r.ended_at else None
        row = (r.id, r.journey_key, r.version, r.state, r.node_id, r.variant, r.entered_at)
        table.add_row(*map(_cell, (*row, ended, r.converted_at)))
    _console().print(table)


@app.command("inspect")
def inspect(
    run_id: str = typer.Argument(..., metavar="RUN_ID"),
    as_json: bool = JSON,
) -> None:
    """The path one customer took through a journey: each node, the edge taken and why."""
    with session_scope(readonly=True) as session:
        found = service.run_detail(session, run_id)
    if found is None:
        raise NotFound(f"no journey run {run_id!r}")
    if as_json:
        _echo_json(found)
        return
    _print_run(found)


def _print_run(r: RunDetail) -> None:
    trigger = f"{r.trigger.get('event', '-')} {_compact(r.trigger.get('properties'))}"
    rows: dict[str, object] = {
        "run": r.id,
        "journey": f"{r.journey_key}, version {r.version}",
        "customer": r.customer_id,
        "entry key": r.entry_key,
        "trigger": trigger,
        "entered at": r.entered_at,
        "state": r.state,
        "variant": r.variant,
    }
    if r.ended_at is None:
        waiting = f" until {_when(r.due_at)}" if r.due_at else ""
        listening = f", or until {r.listen_for}" if r.listen_for else ""
        rows["now at"] = f"{r.node_id}{waiting}{listening}"
    else:
        rows["ended"] = f"{_when(r.ended_at)} ({r.exit_reason})"
    if r.converted_at is not None:
        value = f", value {r.conversion_value}" if r.conversion_value is not None else ""
        rows["converted at"] = f"{_when(r.converted_at)}{value}"
    out = _console()
    out.print(_grid(rows))
    steps = _table("#", "at", "node", "type", "outcome", "next", "delivery", "detail")
    for s in r.steps:
        row = (s.seq, s.at, s.node_id, s.node_type, s.outcome, s.next_node or "(end)")
        steps.add_row(*map(_cell, (*row, s.delivery_id, s.detail)))
    out.print(steps if r.steps else Text("no steps yet"))


# --- blueprints ---


@app.command("blueprints")
def list_blueprints(as_json: bool = JSON) -> None:
    """The journeys regulars ships, ready to install, and the events each reads."""
    found = [BlueprintRead.model_validate(b) for b in blueprints.all_blueprints()]
    if as_json:
        _echo_json(found)
        return
    table = _table("key", "name", "events", "description")
    for b in found:
        events = ", ".join(e.name for e in b.events)
        table.add_row(*map(_cell, (b.key, b.name, events, b.description)))
    _console().print(table)


@app.command("install")
def install(
    key: str = typer.Argument(..., help="Blueprint key (see `regulars journeys blueprints`)."),
    draft: bool = typer.Option(False, "--draft", help="Leave the journey a draft."),
) -> None:
    """Install a blueprint: the templates it needs that are missing, and its journey."""
    with session_scope() as session:
        found = service.install_blueprint(session, key, publish_it=not draft)
    if found.live_version is None:
        typer.echo(f"journey {found.key} installed as a draft")
    else:
        typer.echo(f"journey {found.key} installed and published: version {found.live_version}")


@app.command("webhook-secret")
def webhook_secret() -> None:
    """Print the secret journey webhook calls are signed with (share it with receivers)."""
    typer.echo(service.webhook_secret())
