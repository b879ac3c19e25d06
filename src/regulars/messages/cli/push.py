"""`regulars push keys`: the VAPID key pair that identifies this server to web push services."""

from __future__ import annotations

import typer

from regulars.messages.cli.common import JSON, echo_json, group
from regulars.messages.vapid import generate_keys

push_app = group("Web push: the VAPID keys that identify this server.")


@push_app.command("keys")
def push_keys(as_json: bool = JSON) -> None:
    """Make a VAPID key pair for web push, printed as environment lines."""
    keys = generate_keys()
    if as_json:
        echo_json({"private_key": keys.private_key, "public_key": keys.public_key})
        return
    typer.echo(f"REGULARS_VAPID_PRIVATE_KEY={keys.private_key}")
    typer.echo(f"REGULARS_VAPID_PUBLIC_KEY={keys.public_key}")
    typer.echo(
        "Put these in the environment of `regulars serve` and `regulars worker`; "
        "keep the private key secret.",
        err=True,
    )
