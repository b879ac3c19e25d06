"""The journeys this process knows: each version's graph compiled once, and the live ones
indexed by the event names that start, wake, end or convert their runs.

Ingestion asks the catalog on every batch, so it is cached per process; a cheap stamp query
(ids, statuses, live versions and update times of the journeys) tells when another process
changed them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import event
from sqlalchemy.orm import Session

from regulars.journeys import repository
from regulars.journeys.definition import (
    EventDateTrigger,
    EventTrigger,
    ExitOnEvent,
    ExitOnSegment,
    SegmentTrigger,
    Status,
)
from regulars.journeys.graph import Graph, compile_graph
from regulars.journeys.nodes import Wait

SEGMENT_ENTERED = "segment.entered"
SEGMENT_EXITED = "segment.exited"


@dataclass(frozen=True)
class Version:
    """One published version of a journey, compiled."""

    journey_id: str
    key: str
    version: int
    status: Status
    graph: Graph

    @property
    def accepting(self) -> bool:
        """New runs start only on a live journey."""
        return self.status == Status.LIVE


@dataclass(frozen=True)
class Catalog:
    stamp: tuple[tuple[str, str, int | None, str], ...]
    live: tuple[Version, ...]  # the current version of each live or paused journey
    starts: Mapping[str, tuple[Version, ...]] = field(default_factory=dict)
    exits: Mapping[str, tuple[Version, ...]] = field(default_factory=dict)
    goals: Mapping[str, tuple[Version, ...]] = field(default_factory=dict)
    listened: frozenset[str] = frozenset()  # events some wait node of some version awaits

    def hears(self, name: str) -> bool:
        return name in self.starts or name in self.exits or name in self.goals


_NamesOf = Callable[[Version], set[str]]

_graphs: dict[tuple[str, str, int], Graph] = {}
_catalogs: dict[str, Catalog] = {}
_lock = threading.Lock()


def graph_of(session: Session, journey_id: str, version: int) -> Graph:
    """A published version's graph (versions never change, so the cache never goes stale)."""
    cache_key = (_database(session), journey_id, version)
    found = _graphs.get(cache_key)
    if found is None:
        definition = repository.definition_of(session, journey_id, version)
        if definition is None:
            raise LookupError(f"journey {journey_id} has no version {version}")
        found = compile_graph(definition)
        with _lock:
            _graphs[cache_key] = found
    return found


_IN_TRANSACTION = "regulars.journeys.catalog"


def current(session: Session) -> Catalog:
    """The catalog as this transaction sees it: the stamp is read once per transaction (a
    send's timeline events come back through the event listener many times per batch)."""
    known = session.info.get(_IN_TRANSACTION)
    if isinstance(known, Catalog):
        return known
    stamp = repository.stamp(session)
    database = _database(session)
    cached = _catalogs.get(database)
    if cached is None or cached.stamp != stamp:
        cached = _build(session, stamp)
        with _lock:
            _catalogs[database] = cached
    session.info[_IN_TRANSACTION] = cached
    return cached


def forget(session: Session) -> None:
    """This transaction changed a journey: read the stamp again."""
    session.info.pop(_IN_TRANSACTION, None)


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _end_of_transaction(session: Session) -> None:
    forget(session)


def _database(session: Session) -> str:
    return str(session.get_bind().engine.url)


def _build(session: Session, stamp: tuple[tuple[str, str, int | None, str], ...]) -> Catalog:
    live: list[Version] = []
    listened: set[str] = set()
    keys = repository.journey_keys(session, [row[0] for row in stamp])
    for journey_id, status, live_version, _ in stamp:
        if live_version is None or status == Status.ARCHIVED:
            continue
        for version in {live_version, *repository.versions_in_flight(session, journey_id)}:
            graph = graph_of(session, journey_id, version)
            listened |= {node.event for node in graph.nodes.values() if isinstance(node, Wait)}
        graph = graph_of(session, journey_id, live_version)
        live.append(Version(journey_id, keys[journey_id], live_version, Status(status), graph))
    return Catalog(
        stamp,
        tuple(live),
        starts=_by_name(live, _start_names),
        exits=_by_name(live, _exit_names),
        goals=_by_name(live, _goal_names),
        listened=frozenset(listened),
    )


def _by_name(live: list[Version], names_of: _NamesOf) -> dict[str, tuple[Version, ...]]:
    found: dict[str, list[Version]] = {}
    for version in live:
        for name in names_of(version):
            found.setdefault(name, []).append(version)
    return {name: tuple(versions) for name, versions in found.items()}


def _start_names(version: Version) -> set[str]:
    trigger = version.graph.definition.trigger
    if not version.accepting:
        return set()
    if isinstance(trigger, EventTrigger | EventDateTrigger):
        return {trigger.event}
    if isinstance(trigger, SegmentTrigger):
        return {SEGMENT_ENTERED if trigger.on == "entered" else SEGMENT_EXITED}
    return set()


def _exit_names(version: Version) -> set[str]:
    names = set()
    for criterion in version.graph.definition.exit:
        if isinstance(criterion, ExitOnEvent):
            names.add(criterion.event)
        elif isinstance(criterion, ExitOnSegment):
            names.add(SEGMENT_EXITED if criterion.on == "exited" else SEGMENT_ENTERED)
    return names


def _goal_names(version: Version) -> set[str]:
    goal = version.graph.definition.goal
    return {goal.event} if goal is not None else set()
