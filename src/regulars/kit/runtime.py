"""Tuning of a long-running process (server, worker, importer) once its start-up is over."""

from __future__ import annotations

import gc

# Python's cyclic collector runs a young pass every 700 net container allocations and a full
# pass, over every object alive, whenever the older objects have grown by a quarter. A serving
# process holds a few hundred thousand objects that live as long as it does (modules, classes,
# SQLAlchemy tables, pydantic schemas, Liquid templates), so each full pass took 100 to 150 ms,
# a pause in whatever request or job ran: 11 of them, 1.4 s, in a 10.9 s journey queue drain.
# Frozen, those objects are never scanned again; a larger young generation makes the passes
# rarer. Cycles are still collected, only later: at most this many containers wait.
YOUNG_GENERATION = 50_000


def settle_heap() -> None:
    """Collect once, move every object alive to the collector's permanent generation, and
    raise the young generation's threshold. Call it when start-up is over: what is alive then
    (imports, settings, schemas) lives as long as the process."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION, middle, old)
