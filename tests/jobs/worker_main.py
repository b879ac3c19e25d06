"""`regulars worker` alone, for subprocess tests: `python tests/jobs/worker_main.py --include ...`.

The full `regulars` command mounts every domain's commands; this runs just the worker command.
"""

from __future__ import annotations

import typer

from regulars.server_cli import worker

if __name__ == "__main__":
    typer.run(worker)
