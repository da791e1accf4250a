"""Shelf's errors; the API maps them to HTTP codes and the CLI to exit codes, one place each."""

from __future__ import annotations

from typing import Any


class ShelfError(Exception):
    """Base of every error Shelf reports to a user."""

    status_code = 400
    code = "error"

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class InvalidInput(ShelfError):
    status_code = 422
    code = "invalid_input"


class NotFound(ShelfError):
    status_code = 404
    code = "not_found"


class Conflict(ShelfError):
    status_code = 409
    code = "conflict"


class IntegrityError(ShelfError):
    """Content does not match its digest (corruption or a tampered/mismatched upload)."""

    status_code = 422
    code = "integrity_error"


class Gone(ShelfError):
    status_code = 410
    code = "gone"


class PayloadTooLarge(ShelfError):
    status_code = 413
    code = "payload_too_large"


class RequestTimeout(ShelfError):
    status_code = 408
    code = "request_timeout"


class Unauthorized(ShelfError):
    status_code = 401
    code = "unauthorized"


class Forbidden(ShelfError):
    status_code = 403
    code = "forbidden"


class StoreUnavailable(ShelfError):
    """The artifact store could not be reached or failed; nothing was stored, retry later."""

    status_code = 503
    code = "store_unavailable"


class UpstreamError(ShelfError):
    """A model server could not be reached or failed (gateway)."""

    status_code = 502
    code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    code = "upstream_timeout"
