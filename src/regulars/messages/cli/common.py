"""What the messages commands share: their groups' shape, the options several take, reading
values from the command line, and printing.

Values typed on the command line become the REST API's request models through `validated`,
so a bad value fails as the API would, but named by its flag (`--at`, not `send_at`).
Printing: tables and grids for people, `echo_json` for scripts (`--json`); every value
printed goes through `cell` as plain text, never read as Rich markup.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import orjson
import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from regulars.errors import ValidationFailed
from regulars.messages.schemas import KEY_PATTERN


def group(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True)


class Route(StrEnum):
    """A channel, or auto: the customer's preferred channel the policies allow."""

    AUTO = "auto"
    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    PUSH = "push"
    INAPP = "inapp"
    WEBHOOK = "webhook"


_M = TypeVar("_M", bound=BaseModel)
JSON = typer.Option(False, "--json", help="Print JSON (the REST API's shape) instead.")
ROUTE = typer.Option(Route.AUTO, "--channel", help="A channel, or auto.")
EVENT = typer.Option(
    None, "--event", help='JSON object the template sees as `event`, e.g. {"n": 1}.'
)
# Where a bad value came from, named as the user typed it.
_FLAGS = {
    "send_at": "--at",
    "local_time": "--local-time",
    "throttle_per_minute": "--throttle",
    "expires_in_seconds": "--expires-in",
    "idempotency_key": "--key",
    "rate_per_second": "--rate",
    "config": "--config",
}


# --- Values from the command line ---------------------------------------------------------


def validated(model: type[_M], data: Mapping[str, Any]) -> _M:
    """A request model from command-line values; a bad value is a ValidationFailed naming it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(part) for part in first["loc"]]
        where = ".".join([_FLAGS.get(loc[0], loc[0]), *loc[1:]]) if loc else model.__name__
        message = first["msg"].removeprefix("Value error, ")
        raise ValidationFailed(f"{where}: {message}") from exc


def json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed(f"{what} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValidationFailed(f"{what} must be a JSON object")
    return value


def read_text(path: Path) -> str:
    """A file's text ("-" reads standard input)."""
    try:
        return sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationFailed(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ValidationFailed(f"{path} is not UTF-8 text") from exc


def event_variables(text: str | None) -> dict[str, Any]:
    """The `--event` option's object ({} without it)."""
    return {} if text is None else json_object(text, "--event")


def check_key(key: str, what: str) -> None:
    if not re.match(KEY_PATTERN, key):
        raise ValidationFailed(
            f"{what} {key!r}: use lower-case letters, digits, '_', '.' and '-' (at most 100)"
        )


# --- Printing ---------------------------------------------------------------------------------


def console() -> Console:
    # Wide when piped, so ids are never cut or folded in the middle.
    return Console(width=None if sys.stdout.isatty() else 200)


def cell(value: object) -> Text:
    if isinstance(value, datetime):
        value = value.isoformat(timespec="seconds")
    return Text("-" if value is None or value == "" else str(value))


def new_table(*columns: str) -> Table:
    return Table(*columns, box=None)


def grid(rows: Mapping[str, object]) -> Table:
    shown = Table.grid(padding=(0, 2))
    for label, value in rows.items():
        shown.add_row(Text(label, style="bold"), cell(value))
    return shown


def echo_json(value: object) -> None:
    def dump(item: object) -> object:
        if isinstance(item, BaseModel):
            return item.model_dump(mode="json")
        raise TypeError(f"{type(item).__name__} is not JSON")

    typer.echo(orjson.dumps(value, default=dump, option=orjson.OPT_INDENT_2).decode())
