"""One place that turns errors into JSON responses with the right status code."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry.db.session import database_unavailable
from registry.errors import ShelfError

log = logging.getLogger("shelf.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    422: "invalid_input",
}
DATABASE_UNAVAILABLE = "database_unavailable"
RETRY_AFTER_S = 5


class ErrorBody(BaseModel):
    """Every error the API answers with, whatever its status (422 validation errors too)."""

    error: str = Field(description="Machine-readable code, e.g. not_found, invalid_input")
    message: str = Field(description="One line for a human")
    detail: dict[str, Any] = Field(description="Structured context; validation errors list")


# Documented on every operation, so the OpenAPI document states the real error body.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Malformed request",
        401: "Missing or unknown token",
        403: "The token's role is too low",
        404: "No such model, version, alias, rollout or file",
        408: "The request body stopped arriving",
        409: "Conflicts with the current state",
        413: "Body larger than the configured limit",
        422: "Invalid input (validation, names, limits)",
        503: "A backing service (database, artifact store) is unavailable; retry",
    }.items()
}


def error_body(code: str, message: str, **detail: object) -> dict[str, object]:
    return {"error": code, "message": message, "detail": detail}


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{location}: {error.get('msg')}" if location else str(error.get("msg")))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ShelfError)
    async def _shelf_error(_request: Request, exc: ShelfError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, **exc.detail), status_code=exc.status_code
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse(
            error_body("invalid_input", _describe_validation(exc), errors=errors), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(DBIntegrityError)
    async def _db_conflict(_request: Request, exc: DBIntegrityError) -> JSONResponse:
        log.info("database constraint violated: %s", exc.orig)
        return JSONResponse(
            error_body("conflict", "the change conflicts with the current state; retry"),
            status_code=409,
        )

    async def _database_error(_request: Request, exc: Exception) -> JSONResponse:
        if not database_unavailable(exc):
            log.error("database error", exc_info=exc)
            return JSONResponse(
                error_body("internal", "internal server error; see the server log"),
                status_code=500,
            )
        log.warning("database unavailable: %s", str(exc).splitlines()[0][:300])
        return JSONResponse(
            error_body(
                DATABASE_UNAVAILABLE,
                "the metadata database is unreachable; retry shortly",
                retry_after_s=RETRY_AFTER_S,
            ),
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    # Handled here, not by the catch-all below: Starlette re-raises what reaches that one.
    for kind in (DBAPIError, PoolTimeout):
        app.add_exception_handler(kind, _database_error)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            error_body("internal", "internal server error; see the server log"), status_code=500
        )
