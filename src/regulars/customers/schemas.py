"""Shapes that cross the customers boundary: ingestion results and the API's read models."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Rejection:
    """One message of a batch that was not stored, and why."""

    index: int
    code: str
    reason: str


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
