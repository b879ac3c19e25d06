"""`regulars worker` alone, for subprocess tests: `python tests/jobs/worker_main.py --include ...`.

REGULARS_TEST_CLOCK_AHEAD_SECONDS moves the worker's clock ahead, so a test sees leases expire
without waiting for them.
"""

from __future__ import annotations

import os
from datetime import timedelta

import typer

from regulars.kit import clock
from regulars.server_cli import worker

if __name__ == "__main__":
    ahead = float(os.environ.get("REGULARS_TEST_CLOCK_AHEAD_SECONDS", "0"))
    if ahead:
        clock.set_clock(clock.ShiftedClock(timedelta(seconds=ahead)))
    typer.run(worker)
