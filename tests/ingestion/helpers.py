"""Post like a tracking client does: JSON (or raw bytes), write key as HTTP Basic user."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Mapping

import orjson
from fastapi.testclient import TestClient
from httpx import Response


def basic(write_key: str) -> dict[str, str]:
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def post(
    client: TestClient,
    path: str,
    body: Mapping[str, object] | bytes,
    *,
    write_key: str | None,
    gzipped: bool = False,
) -> Response:
    """POST a JSON body (or raw bytes) with the write key as HTTP Basic user, as the SDKs do."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"Content-Type": "application/json"}
    if write_key is not None:
        headers.update(basic(write_key))
    if gzipped:
        data = gzip.compress(data)
        headers["Content-Encoding"] = "gzip"
    response: Response = client.post(path, content=data, headers=headers)
    return response
