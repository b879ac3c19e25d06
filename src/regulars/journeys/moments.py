"""Moments written as text in run data (a trigger's timestamp, a date property)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def started_at(trigger: Mapping[str, Any]) -> datetime:
    """When the run's trigger happened (the earliest moment for a trigger without one)."""
    return moment(trigger.get("timestamp")) or datetime.min.replace(tzinfo=UTC)


def moment(value: object) -> datetime | None:
    """An event property as a moment: ISO 8601 text (UTC when it names no offset)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
