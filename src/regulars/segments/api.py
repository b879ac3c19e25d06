"""REST API of the segments domain: definitions, compute, preview, explain, members (JSON and
CSV), and a customer's memberships and history.

Reads, previews and explanations need scope read; saving and computing need scope write.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import StreamingResponse

from regulars.db import session_scope
from regulars.identity.api import Caller, require
from regulars.identity.roles import Permission
from regulars.segments import service
from regulars.segments.schemas import (
    MEMBER_CSV_HEADER,
    ComputeResult,
    ExplainRequest,
    Explanation,
    MemberPage,
    MembershipList,
    Preview,
    PreviewRequest,
    SegmentCreate,
    SegmentPage,
    SegmentRead,
    SegmentUpdate,
)

router = APIRouter(prefix="/api", tags=["segments"])

can_read = require(Permission.SEGMENTS_READ)
can_write = require(Permission.SEGMENTS_WRITE)

MAX_LIMIT = 200


@router.get("/segments", response_model=SegmentPage, summary="Segments with member counts")
def list_segments(
    cursor: str | None = Query(None, description="next_cursor of the previous page."),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    _caller: Caller = Depends(can_read),
) -> SegmentPage:
    with session_scope(readonly=True) as session:
        return service.list_page(session, cursor=cursor, limit=limit)


@router.post("/segments", response_model=SegmentRead, status_code=201, summary="Save a segment")
def create_segment(data: SegmentCreate, _caller: Caller = Depends(can_write)) -> SegmentRead:
    """Saves the rule and queues its first compute (or call .../compute to wait for it)."""
    with session_scope() as session:
        created = service.create(session, data)
        service.queue_compute(session, created.key)
        return created


@router.post("/segments/preview", response_model=Preview, summary="Count and sample a rule")
def preview_rule(request: PreviewRequest, _caller: Caller = Depends(can_read)) -> Preview:
    with session_scope(readonly=True) as session:
        return service.preview(session, request.rule, sample=request.sample)


@router.post("/segments/explain", response_model=Explanation, summary="Explain an unsaved rule")
def explain_rule(request: ExplainRequest, _caller: Caller = Depends(can_read)) -> Explanation:
    with session_scope(readonly=True) as session:
        return service.explain(session, request.customer_id, rule_json=request.rule)


@router.get("/segments/{key}", response_model=SegmentRead, summary="One segment")
def get_segment(key: str, _caller: Caller = Depends(can_read)) -> SegmentRead:
    with session_scope(readonly=True) as session:
        return service.segment_read(session, service.require(session, key))


@router.patch("/segments/{key}", response_model=SegmentRead, summary="Change a segment")
def update_segment(
    key: str, data: SegmentUpdate, _caller: Caller = Depends(can_write)
) -> SegmentRead:
    """A changed rule queues a recompute."""
    with session_scope() as session:
        updated, rule_changed = service.update(session, key, data)
        if rule_changed:
            service.queue_compute(session, updated.key)
        return updated


@router.delete("/segments/{key}", status_code=204, summary="Delete a segment")
def delete_segment(key: str, _caller: Caller = Depends(can_write)) -> Response:
    with session_scope() as session:
        service.delete(session, key)
    return Response(status_code=204)


@router.post("/segments/{key}/compute", response_model=ComputeResult, summary="Compute members now")
def compute_segment(key: str, _caller: Caller = Depends(can_write)) -> ComputeResult:
    with session_scope() as session:
        return service.compute(session, key)


@router.get("/segments/{key}/explain", response_model=Explanation, summary="Why in or out")
def explain_segment(
    key: str,
    customer_id: str = Query(..., description="The customer to explain."),
    _caller: Caller = Depends(can_read),
) -> Explanation:
    with session_scope(readonly=True) as session:
        return service.explain(session, customer_id, key_or_id=key)


@router.get("/segments/{key}/members", response_model=MemberPage, summary="Members")
def list_members(
    key: str,
    cursor: str | None = Query(None, description="next_cursor of the previous page."),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    _caller: Caller = Depends(can_read),
) -> MemberPage:
    with session_scope(readonly=True) as session:
        return service.members(session, key, cursor=cursor, limit=limit)


@router.get("/segments/{key}/members.csv", summary="Every member as CSV")
def export_members(key: str, _caller: Caller = Depends(can_read)) -> StreamingResponse:
    with session_scope(readonly=True) as session:
        service.require(session, key)  # a 404 before the stream starts

    def rows() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(MEMBER_CSV_HEADER)
        with session_scope(readonly=True) as session:
            for member in service.all_members(session, key):
                writer.writerow(member.csv_row())
                if buffer.tell() > 64 * 1024:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
        yield buffer.getvalue()

    headers = {"Content-Disposition": f'attachment; filename="segment-{key}.csv"'}
    return StreamingResponse(rows(), media_type="text/csv", headers=headers)


@router.get(
    "/customers/{customer_id}/segments",
    response_model=MembershipList,
    summary="A customer's segments now",
)
def customer_segments(customer_id: str, _caller: Caller = Depends(can_read)) -> MembershipList:
    with session_scope(readonly=True) as session:
        return service.memberships_of(session, customer_id)


@router.get(
    "/customers/{customer_id}/segments/history",
    response_model=MembershipList,
    summary="A customer's segment history",
)
def customer_segment_history(
    customer_id: str,
    cursor: str | None = Query(None, description="next_cursor of the previous page."),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    _caller: Caller = Depends(can_read),
) -> MembershipList:
    with session_scope(readonly=True) as session:
        return service.history_of(session, customer_id, cursor=cursor, limit=limit)
