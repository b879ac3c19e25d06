"""Every setting and every CLI command is documented (a new one without docs fails here)."""

from __future__ import annotations

from pathlib import Path

import typer

from regulars import cli
from regulars.config import Settings

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "settings.md").read_text()
    missing = [name for name in Settings.model_fields if f"`REGULARS_{name.upper()}`" not in text]
    assert missing == []


def _command_paths(command: object, prefix: str) -> list[str]:
    """Leaf command paths of a (Typer-built) click command tree."""
    commands: dict[str, object] | None = getattr(command, "commands", None)
    if commands is None:
        return [prefix]
    return [
        path
        for name, sub in sorted(commands.items())
        for path in _command_paths(sub, f"{prefix} {name}")
    ]


def test_every_command_is_documented_in_docs_cli() -> None:
    cli._mount()
    paths = _command_paths(typer.main.get_command(cli.app), "regulars")
    assert "regulars customers show" in paths and "regulars apikeys revoke" in paths
    headings = {
        line.removeprefix("## ").strip()
        for line in (DOCS / "cli.md").read_text().splitlines()
        if line.startswith("## ")
    }
    assert sorted(set(paths) - headings) == []
    assert sorted(headings - set(paths)) == []
