"""Events the system writes on a customer's timeline (segment.entered, message.delivered...).

They sit beside the customer's own events, so every reader sees one stream. They are not
customer activity: facts (last seen, counts) stay as they were, and no change is published;
event listeners (journeys) hear of them like any other event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from regulars.customers import changes, repository
from regulars.customers.models import EventType

SYSTEM_SOURCE = "regulars"


@dataclass(frozen=True, slots=True)
class SystemEvent:
    customer_id: str
    name: str
    properties: dict[str, Any]
    timestamp: datetime
    key: str  # the message id: the same key is stored once


def record_system_events(
    session: Session, events: Sequence[SystemEvent], *, new_keys: bool = False
) -> int:
    """Store the events not stored before; answer how many were new. `new_keys`: every key
    was made just now (a new id in it), so none can be stored yet."""
    rows = [
        {
            "customer_id": event.customer_id,
            "source": SYSTEM_SOURCE,
            "message_id": event.key,
            "type": EventType.SYSTEM.value,
            "name": event.name,
            "properties": event.properties,
            "context": {},
            "timestamp": event.timestamp,
            "received_at": event.timestamp,
            "sent_at": None,
        }
        for event in events
    ]
    inserted = repository.insert_events(session, rows, new_ids=new_keys)
    changes.publish_events(
        session,
        [
            changes.StoredEvent(e.customer_id, e.name, e.properties, e.timestamp)
            for e in events
            if e.key in inserted
        ],
    )
    return len(inserted)
