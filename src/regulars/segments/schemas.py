"""What the segments API and CLI take and give."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

KEY_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,99}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SegmentCreate(_In):
    key: str = Field(pattern=KEY_PATTERN, description="Stable handle: lower case, digits, _ -")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    rule: dict[str, Any] = Field(description="The rule tree (docs/segments.md)")


class SegmentUpdate(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    rule: dict[str, Any] | None = None


class SegmentRead(BaseModel):
    id: str
    key: str
    name: str
    description: str
    rule: dict[str, Any]
    builtin: bool
    members_count: int
    time_dependence: str
    computed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SegmentPage(BaseModel):
    items: list[SegmentRead]
    next_cursor: str | None


class ComputeResult(BaseModel):
    key: str
    members: int
    entered: int
    exited: int
    computed_at: datetime


class PreviewRequest(_In):
    rule: dict[str, Any]
    sample: int = Field(default=10, ge=0, le=100)


class CustomerBrief(BaseModel):
    id: str
    external_id: str | None
    email: str | None
    name: str | None


class Preview(BaseModel):
    count: int
    sample: list[CustomerBrief]


class NodeExplanation(BaseModel):
    path: str
    type: str
    holds: bool
    measured: Any = None
    says: str = Field(description="The condition in words, with what was measured")


class Explanation(BaseModel):
    segment: str | None
    customer_id: str
    holds: bool
    member: bool | None = Field(description="Stored membership; null for an unsaved rule")
    nodes: list[NodeExplanation]


class ExplainRequest(_In):
    rule: dict[str, Any]
    customer_id: str


MEMBER_CSV_HEADER = ("customer_id", "external_id", "email", "entered_at")


class MemberRead(BaseModel):
    customer_id: str
    external_id: str | None
    email: str | None
    entered_at: datetime

    def csv_row(self) -> list[str]:
        """The row of the members CSV export (MEMBER_CSV_HEADER)."""
        return [
            self.customer_id,
            self.external_id or "",
            self.email or "",
            self.entered_at.isoformat(),
        ]


class MemberPage(BaseModel):
    items: list[MemberRead]
    next_cursor: str | None


class MembershipRead(BaseModel):
    segment_id: str
    key: str
    name: str
    entered_at: datetime
    exited_at: datetime | None = None


class MembershipList(BaseModel):
    items: list[MembershipRead]
    next_cursor: str | None = None
