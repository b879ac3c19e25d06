"""`regulars templates|send|broadcasts|deliveries|providers|push|suppressions`: the messages
domain from a terminal.

Each command is one unit of work (one session_scope). `--json` prints what the REST API
answers, for scripts; the tables are for people. Content written by others (names, reasons,
rendered messages) is printed as plain text, never read as Rich markup.
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

from regulars.customers.rules import MessageInvalid, normalise_email
from regulars.db import session_scope
from regulars.errors import NotFound, ValidationFailed
from regulars.messages import service
from regulars.messages.models import Category, DeliveryStatus, MessageChannel
from regulars.messages.schemas import (
    KEY_PATTERN,
    BroadcastCreate,
    BroadcastRead,
    DeliveryRead,
    MessageCreate,
    PreviewRead,
    PreviewRequest,
    ProviderWrite,
    TemplateWrite,
)
from regulars.messages.vapid import generate_keys


def _group(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True)


templates_app = _group("Message templates: one per purpose and channel, versioned.")
broadcasts_app = _group("Broadcasts: one message to a whole segment.")
deliveries_app = _group("Deliveries: every message and its fate.")
providers_app = _group("Providers: which service carries each channel.")
push_app = _group("Web push: the VAPID keys that identify this server.")
suppressions_app = _group("Suppressed addresses: bounces, complaints, STOP replies.")


class Route(StrEnum):
    """A channel, or auto: the customer's preferred channel the policies allow."""

    AUTO = "auto"
    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    PUSH = "push"
    INAPP = "inapp"
    WEBHOOK = "webhook"


M = TypeVar("M", bound=BaseModel)
JSON = typer.Option(False, "--json", help="Print JSON (the REST API's shape) instead.")
ROUTE = typer.Option(Route.AUTO, "--channel", help="A channel, or auto.")
EVENT = typer.Option(
    None, "--event", help='JSON object the template sees as `event`, e.g. {"n": 1}.'
)
# Where a bad value came from, named as the user typed it.
FLAGS = {
    "send_at": "--at",
    "local_time": "--local-time",
    "throttle_per_minute": "--throttle",
    "expires_in_seconds": "--expires-in",
    "idempotency_key": "--key",
    "rate_per_second": "--rate",
    "config": "--config",
}


def _console() -> Console:
    # Wide when piped, so ids are never cut or folded in the middle.
    return Console(width=None if sys.stdout.isatty() else 200)


def _text(value: object) -> Text:
    if isinstance(value, datetime):
        value = value.isoformat(timespec="seconds")
    return Text("-" if value is None or value == "" else str(value))


def _table(*columns: str) -> Table:
    return Table(*columns, box=None)


def _grid(rows: Mapping[str, object]) -> Table:
    grid = Table.grid(padding=(0, 2))
    for label, value in rows.items():
        grid.add_row(Text(label, style="bold"), _text(value))
    return grid


def _echo_json(value: object) -> None:
    def dump(item: object) -> object:
        if isinstance(item, BaseModel):
            return item.model_dump(mode="json")
        raise TypeError(f"{type(item).__name__} is not JSON")

    typer.echo(orjson.dumps(value, default=dump, option=orjson.OPT_INDENT_2).decode())


def _valid(model: type[M], data: Mapping[str, Any]) -> M:
    """A request model from command-line values; a bad value is a ValidationFailed naming it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(part) for part in first["loc"]]
        where = ".".join([FLAGS.get(loc[0], loc[0]), *loc[1:]]) if loc else model.__name__
        message = first["msg"].removeprefix("Value error, ")
        raise ValidationFailed(f"{where}: {message}") from exc


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed(f"{what} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValidationFailed(f"{what} must be a JSON object")
    return value


def _read(path: Path) -> str:
    """A file's text ("-" reads standard input)."""
    try:
        return sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationFailed(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ValidationFailed(f"{path} is not UTF-8 text") from exc


def _event(text: str | None) -> dict[str, Any]:
    return {} if text is None else _json_object(text, "--event")


def _check_key(key: str, what: str) -> None:
    if not re.match(KEY_PATTERN, key):
        raise ValidationFailed(
            f"{what} {key!r}: use lower-case letters, digits, '_', '.' and '-' (at most 100)"
        )


# --- templates ---


@templates_app.command("list")
def list_templates(as_json: bool = JSON) -> None:
    """Every template with its current version and locales."""
    with session_scope(readonly=True) as session:
        found = service.templates.list_all(session)
    if as_json:
        _echo_json(found)
        return
    table = _table("key", "channel", "name", "category", "topic", "version", "locales")
    for t in found:
        locales = ", ".join(sorted(t.locales))
        table.add_row(
            *map(_text, (t.key, t.channel, t.name, t.category, t.topic, t.version, locales))
        )
    _console().print(table)


@templates_app.command("show")
def show_template(
    key: str = typer.Argument(..., help="The template's purpose, e.g. order_shipped."),
    channel: MessageChannel | None = typer.Option(
        None, "--channel", help="Needed when the key has content for several channels."
    ),
) -> None:
    """The current version of a template, as JSON (what `templates save` takes, and more)."""
    with session_scope(readonly=True) as session:
        if channel is None:
            channels = sorted(service.templates.by_key(session, key))
            if not channels:
                raise NotFound(f"no template {key!r}")
            if len(channels) > 1:
                raise ValidationFailed(
                    f"template {key!r} has {', '.join(channels)} content: pick one with --channel"
                )
            channel = channels[0]
        found = service.templates.get(session, key, channel)
    if found is None:
        raise NotFound(f"no {channel} template {key!r}")
    _echo_json(found)


@templates_app.command("save")
def save_template(
    key: str = typer.Argument(..., help="The template's purpose, e.g. order_shipped."),
    channel: MessageChannel = typer.Argument(...),
    file: Path = typer.Argument(
        ..., help="JSON: name, category, topic, strict, default_locale, locales; - for stdin."
    ),
) -> None:
    """Create a template or save a new version of it from a JSON file."""
    _check_key(key, "template key")
    data = _valid(TemplateWrite, _json_object(_read(file), str(file)))
    with session_scope() as session:
        saved = service.templates.save(session, key, channel, data)
    typer.echo(f"template {key} ({channel}) saved: version {saved.version}")


@templates_app.command("preview")
def preview_template(
    key: str = typer.Argument(..., help="The template's purpose, e.g. order_shipped."),
    customer: str = typer.Argument(..., help="Customer id, external id or email."),
    channel: Route = ROUTE,
    locale: str | None = typer.Option(None, "--locale", help="Default: the customer's."),
    event: str | None = EVENT,
    html: bool = typer.Option(False, "--html", help="Email: print the HTML, not the text part."),
    as_json: bool = JSON,
) -> None:
    """Render a template for one customer with the policy verdict; nothing is sent."""
    request = {"customer": customer, "channel": channel.value, "locale": locale}
    data = _valid(PreviewRequest, {**request, "event": _event(event)})
    with session_scope(readonly=True) as session:
        if channel != Route.AUTO and MessageChannel(channel) not in service.templates.by_key(
            session, key
        ):  # service.preview cannot render a channel the template has no content for
            raise NotFound(f"template {key!r} has no {channel} content")
        found = service.preview(session, key, data)
    if as_json:
        _echo_json(found)
    else:
        _print_preview(found, html=html)
    if found.error is not None:
        raise typer.Exit(1)


def _print_preview(found: PreviewRead, *, html: bool) -> None:
    typer.echo(
        f"template {found.template} version {found.version}, {found.channel}, locale {found.locale}"
    )
    verdict = found.verdict
    why = f"{verdict.reason}: {verdict.message}" if verdict.reason else ""
    if verdict.decision == "defer" and verdict.at is not None:
        why = f"until {verdict.at.isoformat(timespec='seconds')} ({why})"
    typer.echo(f"verdict: {verdict.decision} {why}".rstrip())
    if found.error is not None:
        typer.echo(f"render failed: {found.error}", err=True)
        return
    content = dict(found.content or {})
    if found.channel == MessageChannel.EMAIL:
        typer.echo(f"subject: {content.get('subject', '')}")
        typer.echo(f"preheader: {content.get('preheader', '')}")
        typer.echo("")
        typer.echo(str(content.get("html" if html else "text", "")).rstrip())
        return
    for field, value in content.items():
        shown = value if isinstance(value, str) else orjson.dumps(value).decode()
        typer.echo(f"{field}: {shown}")


@templates_app.command("delete")
def delete_template(
    key: str = typer.Argument(..., help="The template's purpose, e.g. order_shipped."),
    channel: MessageChannel = typer.Argument(...),
) -> None:
    """Delete a template and its versions (sent deliveries keep their content)."""
    with session_scope() as session:
        service.templates.delete(session, key, channel)
    typer.echo(f"template {key} ({channel}) deleted")


# --- sending ---


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
    data = _valid(MessageCreate, {**request, "event": _event(event)})
    with session_scope() as session:
        delivery = service.send_message(session, data)
    if as_json:
        _echo_json(delivery)
        return
    to = f" to {delivery.address}" if delivery.address else ""
    line = f"delivery {delivery.id}: {delivery.status} ({delivery.channel}{to})"
    typer.echo(f"{line} - {delivery.reason}" if delivery.reason else line)


# --- broadcasts ---


def _progress(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{status} {n}" for status, n in sorted(counts.items())) or "-"


@broadcasts_app.command("list")
def list_broadcasts(
    limit: int = typer.Option(50, "--limit", min=1, max=200, help="How many, newest first."),
    as_json: bool = JSON,
) -> None:
    """Recent broadcasts with their audience and progress."""
    with session_scope(readonly=True) as session:
        found = service.list_broadcasts(session, limit=limit)
    if as_json:
        _echo_json(found)
        return
    table = _table("id", "name", "template", "segment", "channel", "status", "send at")
    table.add_column("audience")
    table.add_column("progress")
    for b in found:
        row = (b.id, b.name, b.template, b.segment, b.channel, b.status, b.send_at, b.audience)
        table.add_row(*map(_text, (*row, _progress(b.progress))))
    _console().print(table)


@broadcasts_app.command("show")
def show_broadcast(
    broadcast_id: str = typer.Argument(..., metavar="ID"), as_json: bool = JSON
) -> None:
    """One broadcast and its deliveries counted by status."""
    with session_scope(readonly=True) as session:
        found = service.get_broadcast(session, broadcast_id)
    if found is None:
        raise NotFound(f"no broadcast {broadcast_id!r}")
    if as_json:
        _echo_json(found)
        return
    _print_broadcast(found)


def _print_broadcast(b: BroadcastRead) -> None:
    console = _console()
    rows: dict[str, object] = {
        "id": b.id,
        "name": b.name,
        "template": b.template,
        "segment": b.segment,
        "channel": b.channel,
        "status": b.status,
        "send at": b.send_at,
        "local time": b.local_time,
        "throttle": None if b.throttle_per_minute is None else f"{b.throttle_per_minute}/minute",
        "audience": b.audience,
        "started at": b.started_at,
        "finished at": b.finished_at,
        "cancelled at": b.cancelled_at,
    }
    console.print(_grid(rows))
    progress = _table("status", "deliveries")
    for status in DeliveryStatus:  # in the order a delivery goes through them
        if b.progress.get(status):
            progress.add_row(_text(status), _text(b.progress[status]))
    console.print(progress if b.progress else Text("no deliveries yet"))


@broadcasts_app.command("create")
def create_broadcast(
    name: str = typer.Argument(..., help="Name people see, e.g. 'Summer sale'."),
    template: str = typer.Option(..., "--template", help="Template key."),
    segment: str = typer.Option(..., "--segment", help="Segment key."),
    channel: Route = ROUTE,
    at: str | None = typer.Option(
        None, "--at", metavar="ISO", help="When, with a zone: 2026-12-01T09:00:00Z. Default now."
    ),
    local_time: str | None = typer.Option(
        None, "--local-time", metavar="HH:MM", help="At this time in each customer's zone."
    ),
    throttle: int | None = typer.Option(None, "--throttle", help="At most N per minute."),
    as_json: bool = JSON,
) -> None:
    """Send a template to every member of a segment, now or later."""
    request = {"name": name, "template": template, "segment": segment, "channel": channel.value}
    timing = {"send_at": at, "local_time": local_time, "throttle_per_minute": throttle}
    data = _valid(BroadcastCreate, {**request, **timing})
    with session_scope() as session:
        made = service.create_broadcast(session, data)
    if as_json:
        _echo_json(made)
        return
    typer.echo(f"broadcast {made.id} scheduled for {made.send_at.isoformat(timespec='seconds')}")


@broadcasts_app.command("cancel")
def cancel_broadcast(broadcast_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Stop a broadcast: deliveries not yet handed to a provider are cancelled."""
    with session_scope() as session:
        cancelled = service.cancel_broadcast(session, broadcast_id)
    n = cancelled.progress.get(DeliveryStatus.CANCELLED, 0)
    typer.echo(f"broadcast {broadcast_id} cancelled ({n} deliveries cancelled)")


# --- deliveries ---


@deliveries_app.command("list")
def list_deliveries(
    customer: str | None = typer.Option(None, "--customer", help="Id, external id or email."),
    channel: MessageChannel | None = typer.Option(None, "--channel"),
    status: DeliveryStatus | None = typer.Option(None, "--status"),
    broadcast: str | None = typer.Option(None, "--broadcast", help="Broadcast id."),
    provider: str | None = typer.Option(None, "--provider", help="sandbox: the sandbox outbox."),
    limit: int = typer.Option(20, "--limit", min=1, max=200, help="How many, newest first."),
    as_json: bool = JSON,
) -> None:
    """Deliveries, newest first."""
    with session_scope(readonly=True) as session:
        page = service.list_deliveries(
            session,
            customer=customer,
            channel=channel,
            status=status,
            broadcast_id=broadcast,
            provider=provider,
            limit=limit,
        )
    if as_json:
        _echo_json(page.items)
        return
    table = _table("id", "created at", "customer", "channel", "template", "status", "address")
    table.add_column("provider")
    table.add_column("reason")
    for d in page.items:
        row = (d.id, d.created_at, d.customer_id, d.channel, d.template, d.status, d.address)
        table.add_row(*map(_text, (*row, d.provider, d.reason)))
    _console().print(table)


@deliveries_app.command("show")
def show_delivery(
    delivery_id: str = typer.Argument(..., metavar="ID"),
    html: bool = typer.Option(False, "--html", help="Email: print the HTML too."),
    as_json: bool = JSON,
) -> None:
    """One delivery with its rendered content."""
    with session_scope(readonly=True) as session:
        found = service.get_delivery(session, delivery_id, with_content=True)
    if found is None:
        raise NotFound(f"no delivery {delivery_id!r}")
    if as_json:
        _echo_json(found)
        return
    _print_delivery(found, html=html)


def _print_delivery(d: DeliveryRead, *, html: bool) -> None:
    template = None if d.template is None else f"{d.template} version {d.template_version}"
    provider = d.provider and f"{d.provider} ({d.provider_message_id or 'no message id'})"
    rows: dict[str, object] = {
        "id": d.id,
        "customer": d.customer_id,
        "channel": d.channel,
        "category": d.category if not d.topic else f"{d.category}, topic {d.topic}",
        "template": template,
        "locale": d.locale,
        "status": d.status,
        "reason": d.reason,
        "address": d.address,
        "provider": provider,
        "attempts": d.attempts,
        "broadcast": d.broadcast_id,
    }
    times = {
        "created at": d.created_at,
        "next attempt at": d.next_attempt_at,
        "expires at": d.expires_at,
        "sent at": d.sent_at,
        "delivered at": d.delivered_at,
        "opened at": d.opened_at,
        "clicked at": d.clicked_at,
    }
    rows.update({label: at for label, at in times.items() if at is not None})
    _console().print(_grid(rows))
    for field, value in (d.content or {}).items():
        if field == "html" and not html:
            typer.echo(f"html: {len(str(value))} characters (--html prints it)")
        elif isinstance(value, str) and "\n" in value.strip():
            typer.echo(f"{field}:\n{value.rstrip()}")
        else:
            typer.echo(
                f"{field}: {value if isinstance(value, str) else orjson.dumps(value).decode()}"
            )


# --- providers ---


@providers_app.command("list")
def list_providers(as_json: bool = JSON) -> None:
    """Providers by channel in fail-over order (secrets masked)."""
    with session_scope(readonly=True) as session:
        found = service.providers.list_all(session)
    if as_json:
        _echo_json(found)
        return
    table = _table("name", "channel", "kind", "priority", "enabled", "rate/s", "config")
    for p in found:
        config = orjson.dumps(p.config, option=orjson.OPT_SORT_KEYS).decode()
        enabled = "yes" if p.enabled else "no"
        row = (p.name, p.channel, p.kind, p.priority, enabled, p.rate_per_second, config)
        table.add_row(*map(_text, row))
    _console().print(table)


@providers_app.command("set")
def set_provider(
    name: str = typer.Argument(..., help="A unique name, e.g. postmark."),
    channel: MessageChannel = typer.Option(..., "--channel"),
    kind: str = typer.Option(..., "--kind", help="smtp, twilio_sms, webpush, ... or sandbox."),
    config: str = typer.Option(
        "{}",
        "--config",
        help="JSON object; @FILE reads it from a file (keeps secrets out of the shell history).",
    ),
    priority: int = typer.Option(0, "--priority", help="Lowest is tried first."),
    disabled: bool = typer.Option(False, "--disabled", help="Keep it, but do not use it."),
    rate: float | None = typer.Option(None, "--rate", help="At most R messages per second."),
) -> None:
    """Create or replace a provider."""
    _check_key(name, "provider name")
    text = _read(Path(config[1:])) if config.startswith("@") else config
    request = {"channel": channel, "kind": kind, "priority": priority, "enabled": not disabled}
    data = _valid(
        ProviderWrite,
        {**request, "config": _json_object(text, "--config"), "rate_per_second": rate},
    )
    with session_scope() as session:
        saved = service.providers.save(session, name, data)
    state = "enabled" if saved.enabled else "disabled"
    typer.echo(
        f"provider {name} saved: {saved.channel} via {saved.kind}, "
        f"priority {saved.priority}, {state}"
    )


@providers_app.command("remove")
def remove_provider(name: str = typer.Argument(...)) -> None:
    """Remove a provider (a channel with none left sends to the sandbox)."""
    with session_scope() as session:
        service.providers.delete(session, name)
    typer.echo(f"provider {name} removed")


# --- push ---


@push_app.command("keys")
def push_keys(as_json: bool = JSON) -> None:
    """Make a VAPID key pair for web push, printed as environment lines."""
    keys = generate_keys()
    if as_json:
        _echo_json({"private_key": keys.private_key, "public_key": keys.public_key})
        return
    typer.echo(f"REGULARS_VAPID_PRIVATE_KEY={keys.private_key}")
    typer.echo(f"REGULARS_VAPID_PUBLIC_KEY={keys.public_key}")
    typer.echo(
        "Put these in the environment of `regulars serve` and `regulars worker`; "
        "keep the private key secret.",
        err=True,
    )


# --- suppressions ---


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
        _echo_json(found)
        return
    table = _table("channel", "address", "reason", "delivery", "created at")
    for row in found:
        table.add_row(*map(_text, row.values()))
    _console().print(table)


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
