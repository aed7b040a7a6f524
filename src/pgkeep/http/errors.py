"""The one place errors become HTTP responses: a status table for the tree and the spec's body.

Every error response, the framework's own 404/405/400 included, has the body
`{"error": "...", "details": "..."}`; no traceback ever reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pgkeep import errors
from pgkeep.http.schemas import ErrorBody

logger = logging.getLogger(__name__)

STATUS: dict[type[errors.PgkeepError], int] = {
    errors.PgkeepError: 500,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Cancelled: 409,
    errors.InvalidInput: 400,
    errors.Unprocessable: 422,
    errors.Corrupt: 422,
    errors.Untrusted: 422,
    errors.NoIdentity: 422,
    errors.Busy: 429,
    errors.Unavailable: 503,
    errors.AuthError: 401,
    errors.Forbidden: 403,
    errors.DumpFailed: 500,
    errors.RestoreFailed: 500,
    errors.ToolError: 500,
    errors.DatabaseUnavailable: 500,
    errors.StorageError: 500,
    errors.InsufficientStorage: 507,
    errors.PartlyDeleted: 502,
    errors.ConfigError: 500,
}
_FRAMEWORK_MESSAGES = {404: "Not found", 405: "Method not allowed", 413: "Request body too large"}
NO_STORE = {"Cache-Control": "no-store"}


def documented(*codes: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for error statuses, all with the spec's body."""
    return {code: {"model": ErrorBody, "description": text} for code, text in codes}


def status_for(exc: errors.PgkeepError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(
    status: int,
    error: str,
    details: str = "",
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": error, "details": details, **(extra or {})},
        status_code=status,
        headers={**NO_STORE, **(headers or {})},
    )


async def _pgkeep_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.PgkeepError)  # noqa: S101 (registered for this class)
    status = status_for(exc)
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, errors.Busy):
        headers["Retry-After"] = str(exc.retry_after)
    if status >= 500:
        logger.error(
            "%s %s failed: %s %s", request.method, request.url.path, exc.message, exc.details
        )
    extra = {"stores": exc.stores} if isinstance(exc, errors.PartlyDeleted) else None
    return error_response(status, exc.message, exc.details, headers, extra)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    message = _FRAMEWORK_MESSAGES.get(exc.status_code, str(exc.detail))
    details = f"{request.method} {request.url.path}" if exc.status_code in (404, 405) else ""
    return error_response(exc.status_code, message, details, dict(exc.headers or {}))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    # Name where and what, never echo the input (it may hold a token).
    problems = [
        f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
        for err in exc.errors()
    ]
    return error_response(400, "Invalid request", "; ".join(problems)[:500])


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error in %s %s", request.method, request.url.path)
    return error_response(500, "Internal server error", "see the server log")


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.PgkeepError, _pgkeep_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
