"""`regulars templates|send|broadcasts|deliveries|providers|push|suppressions`: the messages
domain from a terminal.

Each command is one unit of work (one session_scope). `--json` prints what the REST API
answers, for scripts; the tables are for people. Content written by others (names, reasons,
rendered messages) is printed as plain text, never read as Rich markup.

One module per command group, each with its Typer app; common.py holds what they share (the
options several take, reading values from the command line, printing). The root command
(regulars/cli.py) mounts what this package exports.
"""

from __future__ import annotations

from regulars.messages.cli.broadcasts import broadcasts_app
from regulars.messages.cli.deliveries import deliveries_app
from regulars.messages.cli.providers import providers_app
from regulars.messages.cli.push import push_app
from regulars.messages.cli.send import send
from regulars.messages.cli.suppressions import suppressions_app
from regulars.messages.cli.templates import templates_app

__all__ = [
    "broadcasts_app",
    "deliveries_app",
    "providers_app",
    "push_app",
    "send",
    "suppressions_app",
    "templates_app",
]
