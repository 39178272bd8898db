"""Typed errors and their problem+json (RFC 9457) form.

Services raise :class:`YimaError` subclasses with a machine code; one Flask handler (see
:func:`register_error_handlers`) turns them into ``application/problem+json``. The CLI prints the
same ``detail`` and field errors. Unexpected errors answer 500 with a trace id only.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, ClassVar

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger("yima")

PROBLEM_JSON = "application/problem+json"


class YimaError(Exception):
    """Base of every error a service raises on purpose."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, *, errors: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or {}

    def to_problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://yima.dev/problems/{self.code.replace('_', '-')}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if self.errors:
            body["errors"] = self.errors
        return body


class ValidationFailedError(YimaError):
    status = 422
    code = "validation_failed"
    title = "The request has invalid fields"

    @classmethod
    def field(cls, name: str, message: str) -> ValidationFailedError:
        return cls(f"{name}: {message}", errors={name: message})


class NotFoundError(YimaError):
    status = 404
    code = "not_found"
    title = "Not found"


class ConflictError(YimaError):
    status = 409
    code = "conflict"
    title = "Conflict"


class AuthenticationRequiredError(YimaError):
    status = 401
    code = "authentication_required"
    title = "Authentication required"


class PermissionDeniedError(YimaError):
    status = 403
    code = "permission_denied"
    title = "Permission denied"


class CsrfTokenInvalidError(YimaError):
    status = 403
    code = "csrf_token_invalid"
    title = "The request's CSRF token is missing or wrong"


class ServiceUnavailableError(YimaError):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    response = Response(
        json.dumps(body, ensure_ascii=False), status=body["status"], mimetype=PROBLEM_JSON
    )
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def database_unavailable(exc: BaseException) -> bool:
    """True for a database that cannot be reached or is busy (not for a bad statement)."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    # SQLite reports statement errors ("no such column") as OperationalError too.
    text = str(exc.orig).lower()
    return "no such" not in text and "syntax error" not in text


def register_error_handlers(app: Flask) -> None:
    """Every error of ``app`` answers problem+json."""

    @app.errorhandler(YimaError)
    def _yima_error(exc: YimaError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return problem_response(exc.to_problem(), headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        body = {
            "type": "about:blank",
            "title": exc.name,
            "status": status,
            "detail": exc.description or exc.name,
            "code": exc.name.lower().replace(" ", "_"),
        }
        response = problem_response(body)
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        return unexpected_error_response(exc)


def unexpected_error_response(exc: BaseException) -> Response:
    """503 with Retry-After for an unreachable database, else 500 with a trace id only."""
    if database_unavailable(exc):
        log.warning("database unavailable on %s %s: %s", request.method, request.path, exc)
        return problem_response(
            ServiceUnavailableError("the database is unavailable; retry shortly").to_problem(),
            {"Retry-After": "2"},
        )
    trace_id = uuid.uuid4().hex
    log.error("unexpected error %s on %s %s", trace_id, request.method, request.path, exc_info=exc)
    return problem_response(
        {
            "type": "about:blank",
            "title": "Internal server error",
            "status": 500,
            "detail": f"An unexpected error occurred; trace id {trace_id}.",
            "code": "internal_error",
            "trace_id": trace_id,
        }
    )
