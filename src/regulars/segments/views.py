"""Dashboard pages of segments: the list with trend lines, one segment (its rule in words,
members, "why is this customer in or out?"), and the builder with a live count.

The list and the segment page read stored counts (segments.members_count and the daily
segment_counts); only the builder's preview and an explanation evaluate a rule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from regulars.customers import service as customers
from regulars.customers.models import Channel, ConsentStatus
from regulars.db import session_scope
from regulars.errors import Conflict, RegularsError, ValidationFailed
from regulars.identity.roles import Permission
from regulars.identity.staff import SignedIn
from regulars.pages import page, render
from regulars.segments import rules, service
from regulars.segments.schemas import SegmentCreate, SegmentUpdate

router = APIRouter(include_in_schema=False)
FormModel = TypeVar("FormModel", SegmentCreate, SegmentUpdate)

can_read = page(Permission.SEGMENTS_READ)
can_write = page(Permission.SEGMENTS_WRITE)

PAGE_SIZE = 50
SAMPLE_SIZE = 50
NEW_RULE = {"type": "and", "rules": [{"type": "event", "name": "Order Completed"}]}


@dataclass
class Draft:
    """What the builder's form holds, as typed (shown again after an error)."""

    key: str = ""
    name: str = ""
    description: str = ""
    rule: str = ""


# --- charts ---


def _trend_option(line: list[tuple[str, int | None]], *, small: bool) -> dict[str, Any]:
    series = {
        "type": "line",
        "data": [count for _, count in line],
        # A line needs two days; a segment computed once shows its one day as a dot.
        "showSymbol": not small or sum(count is not None for _, count in line) < 3,
        "showAllSymbol": True,
        "symbolSize": 4 if small else 6,
        "areaStyle": {"opacity": 0.15},
        "connectNulls": False,
    }
    axis_label = {"show": not small}
    return {
        "animation": False,
        "grid": {"left": 4, "right": 4, "top": 4, "bottom": 4, "containLabel": not small},
        "tooltip": {"trigger": "axis"},
        "xAxis": {
            "type": "category",
            "data": [day for day, _ in line],
            "show": not small,
            "axisLabel": axis_label,
        },
        "yAxis": {"type": "value", "show": not small, "minInterval": 1, "scale": small},
        "series": [series],
    }


# --- list and segment page ---


@router.get("/segments")
def list_segments(
    request: Request,
    after: str | None = Query(None, max_length=500),
    staff: SignedIn = Depends(can_read),
) -> HTMLResponse:
    with session_scope(readonly=True) as session:
        found = service.list_page(session, cursor=after, limit=PAGE_SIZE)
        lines = service.trends(session, [s.id for s in found.items])
    rows = [{"segment": s, "trend": _trend_option(lines[s.id], small=True)} for s in found.items]
    return render(
        request,
        "segments/list.html",
        staff,
        title="Segments",
        rows=rows,
        next_cursor=found.next_cursor,
        first_page=after is None,
    )


@router.get("/segments/new")
def new_segment(request: Request, staff: SignedIn = Depends(can_write)) -> HTMLResponse:
    draft = Draft(rule=json.dumps(NEW_RULE, indent=2))
    return _builder(request, staff, draft=draft, editing=None)


@router.post("/segments/preview")
def preview(
    request: Request,
    rule: str = Form("", max_length=200_000),
    key: str = Form("", max_length=100),
    staff: SignedIn = Depends(can_read),
) -> HTMLResponse:
    """The builder's live count and sample of 10 (a fragment), or the 422 with the path of
    the bad node."""
    try:
        raw = _parse_json(rule)
        with session_scope(readonly=True) as session:
            result = service.preview_draft(session, raw, key=key.strip() or None)
    except ValidationFailed as error:
        return render(
            request,
            "segments/_preview.html",
            staff,
            status=error.status,
            error=error,
            problems=_problems(error),
        )
    return render(request, "segments/_preview.html", staff, preview=result, error=None)


@router.post("/segments")
def create_segment(
    request: Request,
    key: str = Form("", max_length=200),
    name: str = Form("", max_length=400),
    description: str = Form("", max_length=4000),
    rule: str = Form("", max_length=200_000),
    staff: SignedIn = Depends(can_write),
) -> Response:
    draft = Draft(key=key.strip(), name=name.strip(), description=description.strip(), rule=rule)
    try:
        data = _validated(
            SegmentCreate,
            key=draft.key,
            name=draft.name,
            description=draft.description,
            rule=_parse_json(rule),
        )
        with session_scope() as session:
            created = service.create(session, data)
            service.queue_compute(session, created.key)
    except (ValidationFailed, Conflict) as error:
        return _builder(request, staff, draft=draft, editing=None, error=error)
    return RedirectResponse(f"/segments/{quote(created.key, safe='')}", status_code=303)


@router.get("/segments/{key}")
def segment_page(
    request: Request,
    key: str,
    customer: str = Query("", max_length=320),
    staff: SignedIn = Depends(can_read),
) -> HTMLResponse:
    with session_scope(readonly=True) as session:
        segment = service.segment_read(session, service.require(session, key))
        line = service.trends(session, [segment.id])[segment.id]
        sample = service.members(session, segment.key, cursor=None, limit=SAMPLE_SIZE)
        explained = _explain(session, segment.key, customer) if customer.strip() else None
    return render(
        request,
        "segments/segment.html",
        staff,
        title=segment.name,
        segment=segment,
        outline=service.outline(segment.rule),
        trend=_trend_option(line, small=False),
        sample=sample,
        customer=customer,
        explained=explained,
    )


@router.get("/segments/{key}/explain")
def explain(
    request: Request,
    key: str,
    customer: str = Query("", max_length=320),
    staff: SignedIn = Depends(can_read),
) -> HTMLResponse:
    """Why one customer is in or out: a fragment for the segment page."""
    with session_scope(readonly=True) as session:
        segment = service.require(session, key)
        explained = _explain(session, segment.key, customer)
    status = 404 if explained.get("missing") else 200
    return render(request, "segments/_explain.html", staff, status=status, explained=explained)


@router.get("/segments/{key}/edit")
def edit_segment(request: Request, key: str, staff: SignedIn = Depends(can_write)) -> HTMLResponse:
    with session_scope(readonly=True) as session:
        segment = service.segment_read(session, service.require(session, key))
    if segment.builtin:
        raise Conflict(f"segment {segment.key!r} is built in and cannot be edited")
    draft = Draft(
        key=segment.key,
        name=segment.name,
        description=segment.description,
        rule=json.dumps(segment.rule, indent=2),
    )
    return _builder(request, staff, draft=draft, editing=segment.key)


@router.post("/segments/{key}")
def update_segment(
    request: Request,
    key: str,
    name: str = Form("", max_length=400),
    description: str = Form("", max_length=4000),
    rule: str = Form("", max_length=200_000),
    staff: SignedIn = Depends(can_write),
) -> Response:
    draft = Draft(key=key, name=name.strip(), description=description.strip(), rule=rule)
    try:
        data = _validated(
            SegmentUpdate,
            name=draft.name,
            description=draft.description,
            rule=_parse_json(rule),
        )
        with session_scope() as session:
            updated, rule_changed = service.update(session, key, data)
            if rule_changed:
                service.queue_compute(session, updated.key)
    except (ValidationFailed, Conflict) as error:
        return _builder(request, staff, draft=draft, editing=key, error=error)
    return RedirectResponse(f"/segments/{quote(updated.key, safe='')}", status_code=303)


# --- helpers ---


def _builder(
    request: Request,
    staff: SignedIn,
    *,
    draft: Draft,
    editing: str | None,
    error: RegularsError | None = None,
) -> HTMLResponse:
    with session_scope(readonly=True) as session:
        keys = [k for k in service.all_keys(session) if k != editing]
    options = {
        "profileFields": [*rules.PROFILE_TEXT_FIELDS, *rules.PROFILE_TIME_FIELDS],
        "factFields": [*rules.FACT_NUMBER_FIELDS, *rules.FACT_TIME_FIELDS],
        "ops": [op.value for op in rules.Op],
        "aggregateOps": [op.value for op in rules.Op if op in rules.AGGREGATE_OPS],
        "units": [unit.value for unit in rules.Unit],
        "channels": [channel.value for channel in Channel],
        "consentStatuses": [status.value for status in ConsentStatus],
        "reachability": [channel.value for channel in rules.Reachability],
        "segments": keys,
    }
    return render(
        request,
        "segments/builder.html",
        staff,
        status=error.status if error is not None else 200,
        title=f"Edit {draft.name}" if editing else "New segment",
        draft=draft,
        editing=editing,
        options=options,
        error=error,
        problems=_problems(error) if error is not None else [],
    )


def _parse_json(text: str) -> object:
    """The rule text as JSON, or a 422 that says where the JSON breaks."""
    if not text.strip():
        raise ValidationFailed("rule: give a rule", code="invalid_rule")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise ValidationFailed(
            f"rule: not valid JSON ({exc.msg} at {where})",
            code="invalid_rule",
            details=[{"path": "rule", "message": f"not valid JSON: {exc.msg} at {where}"}],
        ) from None


def _validated(model: type[FormModel], **values: object) -> FormModel:
    """The form as the service's input, or a 422 naming each bad field."""
    if not isinstance(values.get("rule"), dict):
        service.check_condition(values.get("rule"), field="rule")  # a 422 with the path
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        details = [
            {"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
        first = details[0]
        raise ValidationFailed(f"{first['path']}: {first['message']}", details=details) from None


def _problems(error: RegularsError | None) -> list[dict[str, str]]:
    """The (path, message) pairs a rule error names, for the form to point at."""
    if error is None or not isinstance(error.details, list):
        return []
    return [
        {"path": str(d.get("path", "")), "message": str(d.get("message", ""))}
        for d in error.details
        if isinstance(d, dict)
    ]


def _explain(session: Session, key: str, reference: str) -> dict[str, Any]:
    """The explanation for the customer an id, email or external id names, as the template
    draws it (each node with its depth), or {"missing": reference}."""
    reference = reference.strip()
    customer_id = customers.find_customer(session, reference) if reference else None
    if customer_id is None:
        return {"missing": reference or "(nothing typed)"}
    found = service.explain(session, customer_id, key_or_id=key)
    nodes = [
        {
            "depth": sum(part in ("rules", "rule") for part in node.path.split(".")),
            "holds": node.holds,
            "says": node.says,
            "path": node.path,
        }
        for node in found.nodes
    ]
    return {
        "reference": reference,
        "customer_id": found.customer_id,
        "holds": found.holds,
        "member": found.member,
        "nodes": nodes,
    }
