"""The dashboard overview: KPI cards, three charts and the latest activity."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from regulars.analytics import service
from regulars.analytics.service import Summary
from regulars.db import session_scope
from regulars.identity.roles import Permission
from regulars.identity.staff import SignedIn
from regulars.kit import clock
from regulars.pages import page, render

router = APIRouter(include_in_schema=False)


def _per_day(
    summary: Summary, series: dict[str, Any], *, left: int, y_axis: dict[str, Any]
) -> dict[str, Any]:
    """One series over the window's days (labelled MM-DD)."""
    return {
        "tooltip": {"trigger": "axis"},
        "grid": {"left": left, "right": 16, "top": 16, "bottom": 32},
        "xAxis": {"type": "category", "data": [d[5:] for d in summary.days]},
        "yAxis": y_axis,
        "series": [series],
    }


def events_chart(summary: Summary) -> dict[str, Any]:
    series = {"name": "Events", "type": "line", "smooth": True, "data": summary.events_per_day}
    return _per_day(summary, series, left=48, y_axis={"type": "value", "minInterval": 1})


def revenue_chart(summary: Summary) -> dict[str, Any]:
    data = [cents / 100 for cents in summary.revenue_per_day_cents]
    series = {"name": "Revenue", "type": "bar", "data": data}
    return _per_day(summary, series, left=56, y_axis={"type": "value"})


def messages_chart(summary: Summary) -> dict[str, Any]:
    channels = sorted(summary.messages)
    statuses = sorted({s for counts in summary.messages.values() for s in counts})
    return {
        "tooltip": {"trigger": "axis", "axisPointer": {"type": "shadow"}},
        "legend": {"bottom": 0},
        "grid": {"left": 48, "right": 16, "top": 16, "bottom": 56},
        "xAxis": {"type": "category", "data": channels},
        "yAxis": {"type": "value", "minInterval": 1},
        "series": [
            {
                "name": status,
                "type": "bar",
                "stack": "status",
                "data": [summary.messages[c].get(status, 0) for c in channels],
            }
            for status in statuses
        ],
    }


def _figures() -> tuple[Summary, list[service.Activity]]:
    """The stored figures and the latest activity; before the worker's first refresh (a fresh
    database) the figures are computed here and stored."""
    with session_scope(readonly=True) as session:
        summary = service.overview(session)
        if summary is not None:
            return summary, service.recent_activity(session) if summary.customers else []
    with session_scope() as session:
        summary = service.refresh(session, now=clock.now())
        return summary, service.recent_activity(session) if summary.customers else []


@router.get("/")
def overview(
    request: Request, staff: SignedIn = Depends(page(Permission.CUSTOMERS_READ))
) -> HTMLResponse:
    summary, activity = _figures()
    return render(
        request,
        "analytics/overview.html",
        staff,
        title="Overview",
        summary=summary,
        activity=activity,
        messages_total=sum(sum(c.values()) for c in summary.messages.values()),
        charts={
            "events": events_chart(summary),
            "messages": messages_chart(summary),
            "revenue": revenue_chart(summary),
        },
    )
