"""Errors carry their own HTTP status; one handler renders them for the API and the CLI."""

from __future__ import annotations

from typing import Any


class RegularsError(Exception):
    code = "error"
    status = 400

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class ValidationFailed(RegularsError):
    code = "validation_failed"
    status = 422


class NotFound(RegularsError):
    code = "not_found"
    status = 404


class Conflict(RegularsError):
    code = "conflict"
    status = 409


class Unauthorized(RegularsError):
    code = "unauthorized"
    status = 401


class Forbidden(RegularsError):
    code = "forbidden"
    status = 403


class PayloadTooLarge(RegularsError):
    code = "payload_too_large"
    status = 413
