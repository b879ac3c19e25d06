"""Every setting and every CLI command is documented (a new one without docs fails here)."""

from __future__ import annotations

from pathlib import Path

import typer

from regulars.cli import _mount, app
from regulars.config import Settings

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "settings.md").read_text()
    missing = [name for name in Settings.model_fields if f"`REGULARS_{name.upper()}`" not in text]
    assert missing == []


def _commands(group: typer.Typer, prefix: str) -> list[str]:
    names = [
        f"{prefix}{c.name or c.callback.__name__}".strip()
        for c in group.registered_commands
        if c.callback is not None
    ]
    for sub in group.registered_groups:
        assert sub.typer_instance is not None
        names += _commands(sub.typer_instance, f"{prefix}{sub.name} ")
    return [name.replace("_", "-") for name in names]


def test_every_cli_command_is_documented() -> None:
    _mount()
    text = (DOCS / "cli.md").read_text()
    commands = _commands(app, "")
    assert len(commands) >= 10
    missing = [name for name in commands if f"regulars {name}" not in text]
    assert missing == []
