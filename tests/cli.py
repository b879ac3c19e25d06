"""Run the real `regulars` entry point inside a test and get its exit code."""

from __future__ import annotations

import pytest

from regulars.cli import main


def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """`regulars ARGS` through `main()`, as a shell would run it: its exit code."""
    monkeypatch.setattr("sys.argv", ["regulars", *args])
    try:
        main()
    except SystemExit as exit_info:
        return exit_info.code if isinstance(exit_info.code, int) else 0
    return 0
