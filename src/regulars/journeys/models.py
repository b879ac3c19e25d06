"""Journeys, their published versions, the runs (the queue the worker claims) and the steps
each run took (what the statistics and the run inspector read)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from regulars.customers.models import customer_fk
from regulars.db import Base
from regulars.journeys.definition import Status


class RunState(StrEnum):
    ACTIVE = "active"  # due to move on now (due_at set)
    WAITING = "waiting"  # at a delay or wait until due_at, or until woken by an event
    COMPLETED = "completed"  # reached the end of its path
    EXITED = "exited"  # left early: exit criterion, holdout, archived, customer erased


ACTIVE_STATES = (RunState.ACTIVE, RunState.WAITING)
_IN_FLIGHT = text("state IN ('active', 'waiting')")


class Journey(Base):
    __tablename__ = "journeys"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="")
    status: Mapped[Status] = mapped_column(String(16))
    draft: Mapped[dict[str, Any]]
    live_version: Mapped[int | None]
    throttled: Mapped[int] = mapped_column(default=0)  # entries refused by the throttle
    # The last moment a schedule or anniversary trigger enrolled up to.
    enrolled_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class JourneyVersion(Base):
    __tablename__ = "journey_versions"
    __table_args__ = (UniqueConstraint("journey_id", "version", name="uq_journey_versions"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    journey_id: Mapped[str] = mapped_column(
        String(26), ForeignKey("journeys.id", ondelete="CASCADE")
    )
    version: Mapped[int]
    definition: Mapped[dict[str, Any]]
    published_at: Mapped[datetime]


class JourneyRun(Base):
    """One customer's way through one journey. Rows with a `due_at` are the queue."""

    __tablename__ = "journey_runs"
    __table_args__ = (
        Index(
            "ix_journey_runs_due",
            "due_at",
            postgresql_where=text("due_at IS NOT NULL"),
            sqlite_where=text("due_at IS NOT NULL"),
        ),
        # An event wakes the runs waiting for it through this index, not by scanning.
        Index(
            "ix_journey_runs_listening",
            "customer_id",
            "listen_for",
            postgresql_where=text("listen_for IS NOT NULL"),
            sqlite_where=text("listen_for IS NOT NULL"),
        ),
        Index("ix_journey_runs_journey_customer", "journey_id", "customer_id"),
        Index("ix_journey_runs_journey_state_node", "journey_id", "state", "node_id"),
        # One run in flight per customer and entry key (one per order, say).
        Index(
            "uq_journey_runs_in_flight",
            "journey_id",
            "customer_id",
            "entry_key",
            unique=True,
            postgresql_where=_IN_FLIGHT,
            sqlite_where=_IN_FLIGHT,
        ),
        # Re-entry "never": one run ever per customer and entry key.
        UniqueConstraint("journey_id", "once_key", name="uq_journey_runs_once"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    journey_id: Mapped[str] = mapped_column(
        String(26), ForeignKey("journeys.id", ondelete="CASCADE")
    )
    version: Mapped[int]
    customer_id: Mapped[str] = mapped_column(String(26), customer_fk())
    entry_key: Mapped[str] = mapped_column(String(200), default="")
    once_key: Mapped[str | None] = mapped_column(String(240))
    state: Mapped[RunState] = mapped_column(String(16))
    node_id: Mapped[str | None] = mapped_column(String(64))
    arrived_at: Mapped[datetime]  # at the current node
    due_at: Mapped[datetime | None]
    listen_for: Mapped[str | None] = mapped_column(String(200))
    trigger: Mapped[dict[str, Any]]  # name, properties and timestamp of what started it
    # Properties of the events its waits heard (Order Shipped's carrier...), newest winning:
    # later nodes see them beside the trigger's.
    heard: Mapped[dict[str, Any]]
    heard_at: Mapped[datetime | None]  # when the last event a wait took happened
    variant: Mapped[str | None] = mapped_column(String(64))
    steps: Mapped[int] = mapped_column(default=0)
    entered_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    exit_reason: Mapped[str | None] = mapped_column(String(64))
    converted_at: Mapped[datetime | None]
    conversion_value: Mapped[float | None]
    failures: Mapped[int] = mapped_column(default=0)  # batches that failed on this run
    last_error: Mapped[str | None] = mapped_column(String(500))


class JourneyStep(Base):
    """A node a run left: when, by which edge, to where, and the message it sent."""

    __tablename__ = "journey_steps"
    __table_args__ = (
        UniqueConstraint("run_id", "seq", name="uq_journey_steps_run_seq"),
        Index("ix_journey_steps_journey_node", "journey_id", "node_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(
        String(26), ForeignKey("journey_runs.id", ondelete="CASCADE")
    )
    journey_id: Mapped[str] = mapped_column(String(26))
    version: Mapped[int]
    seq: Mapped[int]
    node_id: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(64))
    next_node: Mapped[str | None] = mapped_column(String(64))
    delivery_id: Mapped[str | None] = mapped_column(String(26))
    detail: Mapped[str | None] = mapped_column(String(500))
    at: Mapped[datetime]
