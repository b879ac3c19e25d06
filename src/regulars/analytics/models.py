"""Analytics' own table: the dashboard's figures, computed by the worker and read by the page."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from regulars.db import Base


class AnalyticsSnapshot(Base):
    """One stored set of figures under a key ("overview"): its JSON payload and when it was
    computed. The worker rewrites it every minute; pages read it by primary key."""

    __tablename__ = "analytics_snapshots"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    payload: Mapped[dict[str, Any]]
    computed_at: Mapped[datetime]
