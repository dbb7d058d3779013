"""Domain errors: a code, a French message, field errors, and the HTTP status that fits."""

from __future__ import annotations


class DomainError(Exception):
    status = 422
    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        fields: dict[str, str] | None = None,
        code: str | None = None,
        status: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        if code:
            self.code = code
        if status:
            self.status = status

    def as_json(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "fields": self.fields}}


class ValidationFailed(DomainError):
    status = 422
    code = "validation_failed"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"
