"""`regulars templates`: list, show, save, preview and delete message templates."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer

from regulars.db import session_scope
from regulars.errors import NotFound, ValidationFailed
from regulars.messages import service
from regulars.messages.cli.common import (
    EVENT,
    JSON,
    ROUTE,
    Route,
    cell,
    check_key,
    console,
    echo_json,
    event_variables,
    group,
    json_object,
    new_table,
    read_text,
    validated,
)
from regulars.messages.models import MessageChannel
from regulars.messages.schemas import PreviewRead, PreviewRequest, TemplateWrite

templates_app = group("Message templates: one per purpose and channel, versioned.")


@templates_app.command("list")
def list_templates(as_json: bool = JSON) -> None:
    """Every template with its current version and locales."""
    with session_scope(readonly=True) as session:
        found = service.templates.list_all(session)
    if as_json:
        echo_json(found)
        return
    table = new_table("key", "channel", "name", "category", "topic", "version", "locales")
    for t in found:
        locales = ", ".join(sorted(t.locales))
        table.add_row(
            *map(cell, (t.key, t.channel, t.name, t.category, t.topic, t.version, locales))
        )
    console().print(table)


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
    echo_json(found)


@templates_app.command("save")
def save_template(
    key: str = typer.Argument(..., help="The template's purpose, e.g. order_shipped."),
    channel: MessageChannel = typer.Argument(...),
    file: Path = typer.Argument(
        ..., help="JSON: name, category, topic, strict, default_locale, locales; - for stdin."
    ),
) -> None:
    """Create a template or save a new version of it from a JSON file."""
    check_key(key, "template key")
    data = validated(TemplateWrite, json_object(read_text(file), str(file)))
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
    data = validated(PreviewRequest, {**request, "event": event_variables(event)})
    with session_scope(readonly=True) as session:
        if channel != Route.AUTO and MessageChannel(channel) not in service.templates.by_key(
            session, key
        ):  # service.preview cannot render a channel the template has no content for
            raise NotFound(f"template {key!r} has no {channel} content")
        found = service.preview(session, key, data)
    if as_json:
        echo_json(found)
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
