"""Every error the API can answer with, mapped to an RFC 9457 problem response in one place.

- ``PilotWMSError`` subclasses carry their status, title and structured members (``extra()``).
- JDL errors (``pilotwms.jdl`` does not know about HTTP): 400, with ``line``/``column`` and the
  source line for syntax errors and every ``problems`` entry for validation errors.
- Database unreachable (connection refused, dropped, pool exhausted, SQLite busy): 503 with
  ``Retry-After`` so that clients and pilots back off instead of failing.
- FastAPI's request validation: 422; unknown routes and methods: 404/405; anything else: 500
  with a generic message (details go to the log, not to the client).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from pilotwms.core.errors import PilotWMSError, ServiceUnavailable
from pilotwms.jdl import JDLError, JDLSyntaxError, JDLValidationError

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_BASE = "urn:pilotwms:problem:"


def problem(
    status: int,
    title: str,
    detail: str,
    type_name: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": _TYPE_BASE + type_name,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def pilotwms_error_response(exc: PilotWMSError, instance: str | None = None) -> JSONResponse:
    return problem(
        exc.status,
        exc.title,
        exc.message,
        exc.type_name,
        instance=instance,
        headers=exc.headers() or None,
        **exc.extra(),
    )


def jdl_error_response(exc: JDLError, instance: str | None = None) -> JSONResponse:
    info = exc.to_dict()
    info.pop("type", None)
    info.pop("message", None)
    if isinstance(exc, JDLSyntaxError):
        detail = f"{exc.filename}:{exc.line}:{exc.column}: {exc.message}"
        title = "JDL syntax error"
    elif isinstance(exc, JDLValidationError):
        detail = str(exc)
        title = "Invalid job description"
    else:
        detail = exc.message
        title = "Invalid job description"
    kebab = re.sub(r"(?<!^)(?=[A-Z][a-z])", "-", type(exc).__name__).lower()
    return problem(400, title, detail, kebab, instance=instance, **info)


def database_error_response(exc: Exception, retry_after: int, instance: str | None) -> JSONResponse:
    locked = "database is locked" in str(exc)
    message = (
        "the database is busy; retry shortly"
        if locked
        else "the job database cannot be reached; retry later"
    )
    logger.warning("database unavailable: %s", exc)
    return pilotwms_error_response(
        ServiceUnavailable(message, retry_after=1 if locked else retry_after), instance
    )


def is_database_unavailable(exc: BaseException) -> bool:
    """Errors that mean "cannot talk to the database now", as opposed to a bug in a query."""
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
    return False


def install(app: FastAPI, *, retry_after: int) -> None:
    """Register the handlers on ``app``."""

    def instance(request: Request) -> str:
        return request.url.path

    @app.exception_handler(PilotWMSError)
    async def _pilotwms(request: Request, exc: PilotWMSError) -> JSONResponse:
        if exc.status >= 500:
            logger.error("%s: %s", type(exc).__name__, exc.message)
        return pilotwms_error_response(exc, instance(request))

    @app.exception_handler(JDLError)
    async def _jdl(request: Request, exc: JDLError) -> JSONResponse:
        return jdl_error_response(exc, instance(request))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        return problem(
            422,
            "Invalid request",
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors),
            "invalid-request",
            instance=instance(request),
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        return problem(
            exc.status_code,
            detail,
            f"{request.method} {request.url.path}: {detail}",
            f"http-{exc.status_code}",
            instance=instance(request),
            headers=dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(sa_exc.SQLAlchemyError)
    async def _database(request: Request, exc: sa_exc.SQLAlchemyError) -> JSONResponse:
        if is_database_unavailable(exc):
            return database_error_response(exc, retry_after, instance(request))
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_database_unavailable(exc):
            return database_error_response(exc, retry_after, instance(request))
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            500,
            "Internal error",
            "the server failed to handle the request; the error is in the server log",
            "internal-error",
            instance=instance(request),
        )
