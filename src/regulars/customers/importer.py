"""`regulars import events|customers FILE`: JSONL or CSV, streamed, one transaction per chunk.

The file is never held in memory: rows are read, turned into Segment messages and given to
`ingest` a chunk at a time, each chunk in its own `session_scope()`. Bad rows go to a rejects
file with their line number and the reason; the good rows around them are kept. A row without
a messageId gets one derived from its content, so importing the same file twice stores nothing
new the second time. Exit code: 0 when every row was imported, 1 when some were rejected.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import islice
from pathlib import Path
from typing import IO, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
from sqlalchemy.exc import SQLAlchemyError

from regulars.customers.service import ingest
from regulars.db import session_scope
from regulars.errors import RegularsError, ValidationFailed
from regulars.identity import service as identity
from regulars.kit import clock, runtime

DEFAULT_SOURCE = "import"
# Rows per transaction. Each commit writes every index page its rows dirtied, and the rows of
# one chunk share many pages, so one commit of 10,000 rows writes far fewer pages than ten of
# 1,000 (docs/benchmarks.md, Import). On SQLite a chunk holds the write lock while it is
# stored, about 2 s at 10,000, and a running server waits that long (docs/import.md).
CHUNK = 10_000
CHUNK_MAX = 100_000
SHOWN_REJECTS = 10
EVENT_COLUMNS = frozenset(
    ("type", "userId", "anonymousId", "previousId", "groupId", "event", "name", "timestamp",
     "messageId")
)  # fmt: skip
NESTED_PREFIXES = ("properties.", "traits.", "context.")
CUSTOMER_IDS = frozenset(("userId", "anonymousId", "messageId", "timestamp"))
CUSTOMER_FIELDS = frozenset(("email", "phone", "first_name", "last_name", "timezone", "locale"))
JSON_STARTS = frozenset('-0123456789tfn[{"')


class FileFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


class ImportKind(StrEnum):
    EVENTS = "events"
    CUSTOMERS = "customers"


@dataclass(frozen=True, slots=True)
class Row:
    """One record of the file: a message to ingest, or the reason it can't be one."""

    line: int
    raw: Any
    message: dict[str, Any] | None = None
    code: str = ""
    reason: str = ""


@dataclass(slots=True)
class ImportSummary:
    rows: int = 0
    imported: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejects: list[Row] = field(default_factory=list)  # the first SHOWN_REJECTS; the file has all
    rejects_path: Path | None = None


class RejectsFile:
    """Rejected rows streamed to a JSONL file as they come (an import of any size keeps only a
    few in memory). The file is created at the first reject; a clean run removes the one an
    earlier run left."""

    def __init__(self, path: Path, summary: ImportSummary) -> None:
        self.path = path
        self.summary = summary
        self._out: IO[bytes] | None = None

    def write(self, rows: Iterable[Row]) -> None:
        for row in rows:
            if self._out is None:
                self._out = self.path.open("wb")
            record = {"line": row.line, "code": row.code, "reason": row.reason, "row": row.raw}
            self._out.write(orjson.dumps(record) + b"\n")
            self.summary.rejected += 1
            if len(self.summary.rejects) < SHOWN_REJECTS:
                self.summary.rejects.append(row)

    def close(self) -> None:
        if self._out is None:
            self.path.unlink(missing_ok=True)
            return
        self._out.close()
        self.summary.rejects_path = self.path


# --- reading: file rows to Segment messages (pure) -------------------------------------------


def detect_format(path: Path, given: FileFormat | None) -> FileFormat:
    if given is not None:
        return given
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return FileFormat.JSONL
    if suffix in (".csv", ".txt"):
        return FileFormat.CSV
    raise ValidationFailed(f"cannot tell the format of {path.name}: pass --format jsonl or csv")


def jsonl_rows(stream: IO[bytes]) -> Iterator[Row]:
    for line, raw in enumerate(stream, start=1):
        text = raw.removeprefix(b"\xef\xbb\xbf") if line == 1 else raw
        if not text.strip():
            continue
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            shown = text.decode(errors="replace").rstrip("\r\n")
            reason = f"not valid JSON: {exc.msg} at character {exc.pos + 1}"
            yield Row(line, shown, code="invalid_json", reason=reason)
            continue
        if not isinstance(value, dict):
            yield Row(line, value, code="invalid_message", reason="a line must be a JSON object")
            continue
        message = {key: item for key, item in value.items() if key != "sentAt"}
        yield Row(line, value, message=with_message_id(message))


def csv_rows(stream: IO[bytes], kind: ImportKind) -> Iterator[Row]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        yield from _csv_records(csv.reader(text), kind)
    finally:
        text.detach()  # the caller's stream stays open (and tells how far we've read)


def _csv_records(reader: Any, kind: ImportKind) -> Iterator[Row]:
    header = next(reader, None)
    if header is None:
        return
    convert = _csv_converter(header, kind)
    line = reader.line_num + 1
    for values in reader:
        row_line, line = line, reader.line_num + 1
        if not values or values == [""]:
            continue
        if len(values) != len(header):
            reason = f"expected {len(header)} columns, found {len(values)}"
            yield Row(row_line, values, code="invalid_row", reason=reason)
            continue
        record = dict(zip(header, values, strict=True))
        yield Row(row_line, record, message=with_message_id(convert(record)))


def _csv_converter(header: list[str], kind: ImportKind) -> Callable[[dict[str, str]], Any]:
    if len(set(header)) != len(header):
        raise ValidationFailed("the CSV header names a column twice")
    if kind is ImportKind.CUSTOMERS:
        return customer_message
    unknown = [c for c in header if c not in EVENT_COLUMNS and not c.startswith(NESTED_PREFIXES)]
    if unknown:
        allowed = ", ".join(sorted(EVENT_COLUMNS)) + ", properties.*, traits.*, context.*"
        raise ValidationFailed(f"unknown columns {', '.join(unknown)}; allowed: {allowed}")
    return event_message


def event_message(record: dict[str, str]) -> dict[str, Any]:
    """An events CSV row as a Segment message; `properties.a.b` columns become nested keys."""
    message: dict[str, Any] = {}
    for column, cell in record.items():
        if cell == "":
            continue
        if column.startswith(NESTED_PREFIXES):
            _put(message, column.split("."), cell_value(cell))
        else:
            message[column] = cell
    return message


def customer_message(record: dict[str, str]) -> dict[str, Any]:
    """A customers CSV row as an identify; columns other than the ids are traits."""
    message: dict[str, Any] = {"type": "identify", "traits": {}}
    for column, cell in record.items():
        if cell == "":
            continue
        if column in CUSTOMER_IDS:
            message[column] = cell
        elif column in CUSTOMER_FIELDS:
            message["traits"][column] = cell
        else:
            _put(message["traits"], column.removeprefix("traits.").split("."), cell_value(cell))
    return message


def cell_value(cell: str) -> Any:
    """A cell that reads as JSON (number, true, false, null, array, object, "string") is that
    value; any other text is a string. `42` is a number, `01234` and `+4930...` stay text."""
    if cell[0] not in JSON_STARTS:
        return cell
    try:
        return orjson.loads(cell)
    except orjson.JSONDecodeError:
        return cell


def _put(target: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        child = target.get(key)
        if not isinstance(child, dict):
            child = target[key] = {}
        target = child
    target[path[-1]] = value


def with_message_id(message: dict[str, Any]) -> dict[str, Any]:
    """Give a message without messageId one derived from its content (not from the file)."""
    if not message.get("messageId"):
        digest = hashlib.sha256(orjson.dumps(message, option=orjson.OPT_SORT_KEYS)).hexdigest()
        message["messageId"] = f"import-{digest[:40]}"
    return message


def read_rows(stream: IO[bytes], *, kind: ImportKind, file_format: FileFormat) -> Iterator[Row]:
    if file_format is FileFormat.JSONL:
        return jsonl_rows(stream)
    return csv_rows(stream, kind)


# --- running: chunks into the database, one transaction each (the CLI boundary) ------------


def import_file(
    path: Path,
    *,
    kind: ImportKind,
    file_format: FileFormat | None = None,
    source: str = DEFAULT_SOURCE,
    rejects_path: Path | None = None,
    chunk_size: int = CHUNK,
    on_progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import `path` chunk by chunk, committing each; `on_progress` gets the bytes read so far."""
    file_format = detect_format(path, file_format)
    with session_scope() as session:
        source_id = identity.get_or_create_source(session, source).id
    summary = ImportSummary()
    rejects = RejectsFile(rejects_path or default_rejects(path), summary)
    try:
        with path.open("rb") as stream:
            rows = read_rows(stream, kind=kind, file_format=file_format)
            for chunk in _chunks(rows, chunk_size):
                _import_chunk(chunk, source_id=source_id, summary=summary, rejects=rejects)
                if on_progress is not None:
                    on_progress(stream.tell())
    finally:
        rejects.close()
    return summary


def default_rejects(path: Path) -> Path:
    return path.with_name(path.name + ".rejects.jsonl")


def _chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _import_chunk(
    chunk: list[Row], *, source_id: str, summary: ImportSummary, rejects: RejectsFile
) -> None:
    good = [row for row in chunk if row.message is not None]
    bad = [row for row in chunk if row.message is None]
    messages = [row.message for row in good if row.message is not None]
    try:
        with session_scope() as session:
            result = ingest(session, messages, source=source_id, received_at=clock.now())
    except SQLAlchemyError as exc:  # the chunk rolled back; earlier chunks stay committed
        first, last = chunk[0].line, chunk[-1].line
        raise RegularsError(
            f"import stopped at lines {first}-{last} ({exc.__class__.__name__}); the rows "
            "before were imported and running the same import again is safe",
            status=500,
        ) from exc
    for rejection in result.rejected:
        row = good[rejection.index]
        bad.append(Row(row.line, row.raw, code=rejection.code, reason=rejection.reason))
    summary.rows += len(chunk)
    summary.imported += result.accepted
    summary.duplicates += result.duplicates
    rejects.write(sorted(bad, key=lambda row: row.line))


# --- commands -------------------------------------------------------------------------------

FILE_ARGUMENT = typer.Argument(..., exists=True, dir_okay=False, readable=True)
FORMAT_OPTION = typer.Option(None, "--format", help="jsonl or csv [default: from the extension].")
SOURCE_OPTION = typer.Option(DEFAULT_SOURCE, "--source", help="Source name the rows come from.")
REJECTS_OPTION = typer.Option(None, "--rejects", help="Rejects file [default: FILE.rejects.jsonl].")
CHUNK_OPTION = typer.Option(
    CHUNK, "--chunk-size", min=1, max=CHUNK_MAX, help="Rows per transaction."
)


def import_events(
    file: Path = FILE_ARGUMENT,
    file_format: FileFormat | None = FORMAT_OPTION,
    source: str = SOURCE_OPTION,
    rejects: Path | None = REJECTS_OPTION,
    chunk_size: int = CHUNK_OPTION,
) -> None:
    """Import Segment messages: JSONL, or CSV with type, userId, event, properties.* columns."""
    _run(file, ImportKind.EVENTS, file_format, source, rejects, chunk_size)


def import_customers(
    file: Path = FILE_ARGUMENT,
    file_format: FileFormat | None = FORMAT_OPTION,
    source: str = SOURCE_OPTION,
    rejects: Path | None = REJECTS_OPTION,
    chunk_size: int = CHUNK_OPTION,
) -> None:
    """Import customer profiles: CSV with userId, email, phone, ... columns, or JSONL identifies."""
    _run(file, ImportKind.CUSTOMERS, file_format, source, rejects, chunk_size)


def register(import_app: typer.Typer) -> None:
    """Add `events` and `customers` to the `regulars import` group."""
    import_app.command("events")(import_events)
    import_app.command("customers")(import_customers)


def _run(
    file: Path,
    kind: ImportKind,
    file_format: FileFormat | None,
    source: str,
    rejects: Path | None,
    chunk_size: int,
) -> None:
    runtime.settle_heap()  # a long run of one process: see kit/runtime.py
    err = Console(stderr=True)
    columns = (*Progress.get_default_columns()[:2], BarColumn(), DownloadColumn())
    with Progress(*columns, TimeRemainingColumn(), console=err, transient=True) as progress:
        task = progress.add_task(f"{file.name}", total=file.stat().st_size)
        summary = import_file(
            file,
            kind=kind,
            file_format=file_format,
            source=source,
            rejects_path=rejects,
            chunk_size=chunk_size,
            on_progress=lambda done: progress.update(task, completed=done),
        )
    _report(summary, file=file, source=source)
    if summary.rejected:
        raise typer.Exit(1)


def _report(summary: ImportSummary, *, file: Path, source: str) -> None:
    out = Console(highlight=False, soft_wrap=True)  # one line per reject, even when piped
    out.print(
        f"{file.name}: {summary.rows:,} rows, {summary.imported:,} imported, "
        f"{summary.duplicates:,} already there, {summary.rejected:,} rejected "
        f"(source {source})"
    )
    for row in summary.rejects[:SHOWN_REJECTS]:
        out.print(f"  line {row.line}: {row.code}: {row.reason}")
    if summary.rejected > SHOWN_REJECTS:
        out.print(f"  ... and {summary.rejected - SHOWN_REJECTS:,} more")
    if summary.rejects_path is not None:
        out.print(f"Rejected rows written to {summary.rejects_path}")
