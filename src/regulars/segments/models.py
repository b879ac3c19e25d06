from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from regulars.customers.models import customer_fk
from regulars.db import Base, BigID


def segment_fk() -> ForeignKey:
    return ForeignKey("segments.id", ondelete="CASCADE")


class Segment(Base):
    """A named rule tree (segments.rules), its live membership count and when it was computed.

    `key` is the stable handle other rules, journeys and the CLI use; built-in segments
    (lifecycle stages, RFM groups) are shipped by the product and cannot be edited."""

    __tablename__ = "segments"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="")
    rule: Mapped[dict[str, Any]]
    builtin: Mapped[bool] = mapped_column(default=False)
    members_count: Mapped[int] = mapped_column(default=0)
    computed_at: Mapped[datetime | None]
    # The sweep for time-dependent rules has re-checked every edge up to this moment.
    swept_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SegmentMember(Base):
    """Who is in a segment now."""

    __tablename__ = "segment_members"

    segment_id: Mapped[str] = mapped_column(String(26), segment_fk(), primary_key=True)
    customer_id: Mapped[str] = mapped_column(
        String(26), customer_fk(), primary_key=True, index=True
    )
    entered_at: Mapped[datetime]


class SegmentMembershipSpan(Base):
    """Membership history: one row per stay, exited_at empty while it lasts."""

    __tablename__ = "segment_membership_history"
    # One index: each is a page written at a random place for every stay that opens. Closing
    # a stay (segment and customers) reads the customer's few stays through it; an index
    # led by the segment would serve only that, and the cascade of deleting a segment.
    __table_args__ = (Index("ix_segment_history_customer", "customer_id", "entered_at"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    segment_id: Mapped[str] = mapped_column(String(26), segment_fk())
    customer_id: Mapped[str] = mapped_column(String(26), customer_fk())
    entered_at: Mapped[datetime]
    exited_at: Mapped[datetime | None]


class SegmentCountChange(Base):
    """A change to a segment's member count not yet folded into segments.members_count.

    Live re-evaluation appends these instead of updating the segment row: on PostgreSQL every
    ingesting transaction that moved a popular segment would otherwise queue on that one row's
    lock until it commits. The sweep folds them in; a count read adds the ones still here."""

    __tablename__ = "segment_count_changes"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    segment_id: Mapped[str] = mapped_column(String(26), segment_fk(), index=True)
    delta: Mapped[int]


class SegmentCount(Base):
    """Members per segment per day (UTC), for trend lines."""

    __tablename__ = "segment_counts"

    segment_id: Mapped[str] = mapped_column(String(26), segment_fk(), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    members_count: Mapped[int]
