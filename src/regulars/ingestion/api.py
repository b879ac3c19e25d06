"""The Segment HTTP Tracking API: POST /v1/{identify,track,page,screen,group,alias,batch}.

A request is read here (size caps, gzip, JSON, write key) and handed, as plain message dicts, to
`customers.service.prepare` (validation, no database) and `store` (identities, events, facts).
The work runs in the thread pool, one `session_scope()` per request, retried as a whole when a
concurrent request wins a race on a unique identity.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import NotRequired, TypedDict

import orjson
from fastapi import APIRouter, Request
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.concurrency import run_in_threadpool

from regulars.config import get_settings
from regulars.customers.models import EventType
from regulars.customers.schemas import IngestResult
from regulars.customers.service import PreparedBatch, prepare, store
from regulars.db import session_scope
from regulars.errors import PayloadTooLarge, RegularsError
from regulars.identity.api import authenticate, write_key_of
from regulars.kit import clock
from regulars.kit.responses import JSONBody

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["ingestion"])

SINGLE_PATHS: dict[str, EventType] = {
    "identify": EventType.IDENTIFY,
    "track": EventType.TRACK,
    "page": EventType.PAGE,
    "screen": EventType.SCREEN,
    "group": EventType.GROUP,
    "alias": EventType.ALIAS,
}
SHORT_PATHS = {
    "i": "identify",
    "t": "track",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
}
BATCH_SHARED_FIELDS = ("context", "integrations", "sentAt")
ATTEMPTS = 4
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock
GZIP_SLACK_BYTES = 1024  # a gzip body of incompressible data is a little larger than its content


class RejectionBody(TypedDict):
    index: int
    code: str
    reason: str


class SuccessBody(TypedDict):
    success: bool
    accepted: NotRequired[int]
    rejected: NotRequired[list[RejectionBody]]


def invalid_body(message: str, *, code: str = "invalid_body") -> RegularsError:
    return RegularsError(message, code=code, status=400)


@dataclass(frozen=True, slots=True)
class Call:
    """What the threadpool needs from the request: the raw body and two headers."""

    raw: bytes
    encoding: str
    authorization: str | None


# ---- reading the body --------------------------------------------------------------------------


async def read_call(request: Request, *, limit: int) -> Call:
    """Read at most `limit` (plus gzip slack) raw bytes; a longer body is a 413 before parsing."""
    cap = limit + GZIP_SLACK_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise _too_large(limit)
        chunks.append(chunk)
    return Call(
        raw=b"".join(chunks),
        encoding=request.headers.get("content-encoding", ""),
        authorization=request.headers.get("authorization"),
    )


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"body is larger than {limit} bytes", details={"limit_bytes": limit})


def decode_body(call: Call, *, limit: int) -> dict[str, object]:
    """Decompress and parse the body into a JSON object, or raise a 4xx saying what is wrong."""
    data = _decompress(call.raw, call.encoding, limit=limit)
    if len(data) > limit:
        raise _too_large(limit)
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise invalid_body(f"body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise invalid_body(f"body must be a JSON object, not {type(body).__name__}")
    return body


def _decompress(raw: bytes, encoding: str, *, limit: int) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding in ("gzip", "x-gzip"):
        return _gunzip(raw, limit=limit)
    raise RegularsError(
        f"Content-Encoding {encoding!r} is not supported: send gzip or none",
        code="unsupported_encoding",
        status=415,
    )


def _gunzip(raw: bytes, *, limit: int) -> bytes:
    """Inflate at most limit + 1 bytes, so a gzip bomb costs no more memory than a real batch."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise invalid_body(f"body is not valid gzip: {exc}") from exc
    if len(data) > limit:
        raise _too_large(limit)
    if not inflater.eof:
        raise invalid_body("body is not valid gzip: the stream is truncated")
    return data


# ---- auth --------------------------------------------------------------------------------------


# ---- messages ----------------------------------------------------------------------------------


def batch_messages(body: Mapping[str, object]) -> list[object]:
    """The batch's items, each given the batch's context, integrations and sentAt it lacks."""
    items = body.get("batch")
    if not isinstance(items, list):
        raise invalid_body("batch must be a list of messages")
    shared = {key: body[key] for key in BATCH_SHARED_FIELDS if body.get(key) is not None}
    return [_with_shared(item, shared) for item in items]


def _with_shared(item: object, shared: Mapping[str, object]) -> object:
    if not isinstance(item, dict) or not shared:
        return item
    merged = dict(item)
    for key, value in shared.items():
        own = merged.get(key)
        if own is None:
            merged[key] = value
        elif key == "context" and isinstance(value, dict) and isinstance(own, dict):
            merged[key] = {**value, **own}
    return merged


def single_message(body: Mapping[str, object], kind: EventType) -> dict[str, object]:
    message = {key: value for key, value in body.items() if key != "writeKey"}
    message["type"] = kind.value
    return message


# ---- storing -----------------------------------------------------------------------------------


def store_items(items: list[object], *, write_key: str) -> IngestResult:
    """Validate and store the items in one transaction; `prepare` rejects bad ones by index."""
    batch = prepare(items, received_at=clock.now())  # validation needs no lock
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _store(batch, write_key=write_key)
        except (IntegrityError, OperationalError) as exc:
            if not _retryable(exc):
                raise
            log.info("ingest lost a race (attempt %d of %d): %s", attempt, ATTEMPTS, exc.orig)
    raise RegularsError("the database is busy: retry the request", code="unavailable", status=503)


def _store(batch: PreparedBatch, *, write_key: str) -> IngestResult:
    with session_scope() as session:
        return store(session, batch, source=authenticate(session, write_key))


def _retryable(exc: IntegrityError | OperationalError) -> bool:
    if isinstance(exc, IntegrityError):
        return True  # a concurrent request created the same identity or group first
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return sqlstate in RETRYABLE_SQLSTATES or "database is locked" in str(exc.orig)


# ---- endpoints ---------------------------------------------------------------------------------


def handle_batch(call: Call) -> JSONBody:
    body = decode_body(call, limit=get_settings().max_batch_bytes)
    write_key = write_key_of(call.authorization, body)
    items = batch_messages(body)
    result = store_items(items, write_key=write_key)
    return JSONBody(_success_body(result, total=len(items)))


def _success_body(result: IngestResult, *, total: int) -> SuccessBody:
    if not result.rejected:
        return {"success": True}
    rejected: list[RejectionBody] = [
        {"index": r.index, "code": r.code, "reason": r.reason} for r in result.rejected
    ]
    return {"success": True, "accepted": total - len(rejected), "rejected": rejected}


def handle_single(call: Call, kind: EventType) -> JSONBody:
    body = decode_body(call, limit=get_settings().max_event_bytes)
    write_key = write_key_of(call.authorization, body)
    result = store_items([single_message(body, kind)], write_key=write_key)
    if result.rejected:
        rejection = result.rejected[0]
        raise invalid_body(rejection.reason, code=rejection.code)
    return JSONBody({"success": True})


@router.post("/batch", summary="Send up to 500 KB of messages of any type")
async def post_batch(request: Request) -> JSONBody:
    call = await read_call(request, limit=get_settings().max_batch_bytes)
    return await run_in_threadpool(handle_batch, call)


def _single_endpoint(kind: EventType) -> Callable[[Request], Awaitable[JSONBody]]:
    async def endpoint(request: Request) -> JSONBody:
        call = await read_call(request, limit=get_settings().max_event_bytes)
        return await run_in_threadpool(handle_single, call, kind)

    return endpoint


for _path, _kind_of_path in SINGLE_PATHS.items():
    router.add_api_route(
        f"/{_path}",
        _single_endpoint(_kind_of_path),
        methods=["POST"],
        summary=f"Send one {_path} message",
        name=f"post_{_path}",
    )
for _short, _path in SHORT_PATHS.items():
    router.add_api_route(
        f"/{_short}",
        _single_endpoint(SINGLE_PATHS[_path]),
        methods=["POST"],
        include_in_schema=False,
        name=f"post_{_short}",
    )
