"""What changed about which customers in this transaction, told to whoever listens.

Segments keep their memberships live this way: the customers domain cannot know about
segments (imports point down), so a listener registers itself here and is called, in the
same transaction, after each write that can change what a rule reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session


@dataclass
class CustomerChange:
    """What changed for one customer. `everything` after a merge: re-read it all."""

    event_names: set[str] = field(default_factory=set)
    profile: bool = False
    facts: bool = False  # counts, totals, first/last times moved (never RFM scores)
    consents: bool = False
    groups: bool = False
    everything: bool = False


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event just stored on a customer's timeline, as listeners (journeys) read it."""

    customer_id: str
    name: str
    properties: Mapping[str, Any]
    timestamp: datetime


ChangeListener = Callable[[Session, Mapping[str, CustomerChange]], None]
EventListener = Callable[[Session, Sequence[StoredEvent]], None]
RemovalListener = Callable[[Session, str, "str | None"], None]
# Rows another domain holds about a customer, for the GDPR export: name -> rows.
ExportContributor = Callable[[Session, str], Mapping[str, Sequence[BaseModel]]]

_change_listeners: list[ChangeListener] = []
_removal_listeners: list[RemovalListener] = []
_event_listeners: list[EventListener] = []
_export_contributors: list[ExportContributor] = []


def on_change(listener: ChangeListener) -> ChangeListener:
    """Call `listener(session, changes)` after every write that changes customers."""
    if listener not in _change_listeners:
        _change_listeners.append(listener)
    return listener


def on_events(listener: EventListener) -> EventListener:
    """Call `listener(session, events)` with the named events (track, page, screen and
    system events) each write stored, in the same transaction, after the change listeners."""
    if listener not in _event_listeners:
        _event_listeners.append(listener)
    return listener


def on_removal(listener: RemovalListener) -> RemovalListener:
    """Call `listener(session, customer_id, survivor_id)` before a profile is removed: merged
    into the survivor, or erased (survivor None). Rows that hang on it elsewhere can move or
    go, and what counts them stays right."""
    if listener not in _removal_listeners:
        _removal_listeners.append(listener)
    return listener


def on_export(contributor: ExportContributor) -> ExportContributor:
    """Add `contributor(session, customer_id)`'s rows to every GDPR export: the domains that
    keep rows about a customer (segments, messages) say what they hold."""
    if contributor not in _export_contributors:
        _export_contributors.append(contributor)
    return contributor


def contributions(session: Session, customer_id: str) -> dict[str, list[BaseModel]]:
    found: dict[str, list[BaseModel]] = {}
    for contributor in _export_contributors:
        for name, rows in contributor(session, customer_id).items():
            found.setdefault(name, []).extend(rows)
    return found


def publish(session: Session, changes: Mapping[str, CustomerChange]) -> None:
    if changes:
        for listener in _change_listeners:
            listener(session, changes)


def publish_events(session: Session, events: Sequence[StoredEvent]) -> None:
    if events:
        for listener in _event_listeners:
            listener(session, events)


def publish_removal(session: Session, customer_id: str, survivor_id: str | None) -> None:
    for listener in _removal_listeners:
        listener(session, customer_id, survivor_id)


def one(
    customer_ids: Iterable[str], *, profile: bool = False, consents: bool = False
) -> dict[str, CustomerChange]:
    """The same profile or consent change for each customer given."""
    return {
        customer_id: CustomerChange(profile=profile, consents=consents)
        for customer_id in customer_ids
    }
