"""One error shape for every failure: RFC 9457 ``application/problem+json``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson
from flask import Flask, Response
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

from .request_id import current_request_id

PROBLEM_JSON = "application/problem+json"
DATABASE_RETRY_AFTER_SECONDS = 2
# A problem reports at most this many field errors, each name cut to this length, so
# its size does not grow with the input (120k repeated parameters once gave 3.7 MB).
MAX_REPORTED_ERRORS = 5
MAX_LOC_PART_LENGTH = 64

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the API reports to the client as a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = dict(headers or {})


def problem(
    status: int,
    detail: str,
    *,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "request_id": current_request_id(),
    }
    if errors is not None:
        body["errors"] = [_bounded(error) for error in errors[:MAX_REPORTED_ERRORS]]
        if len(errors) > MAX_REPORTED_ERRORS:
            body["detail"] = f"{detail} (first {MAX_REPORTED_ERRORS} of {len(errors)} errors)"
    response = Response(orjson.dumps(body), status=status, mimetype=PROBLEM_JSON)
    response.headers.update(headers or {})
    return response


def _bounded(error: Mapping[str, Any]) -> dict[str, Any]:
    loc = [part[:MAX_LOC_PART_LENGTH] if isinstance(part, str) else part for part in error.get("loc", ())]
    return {**error, "loc": loc}


def _handle_api_error(exc: ApiError) -> Response:
    return problem(exc.status, exc.detail, errors=exc.errors, headers=exc.headers)


def _handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    # Keep headers such as Allow (405) and Retry-After; the body is ours.
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return problem(status, exc.description or HTTPStatus(status).description, headers=headers)


def is_database_unavailable(exc: BaseException) -> bool:
    """True for failures that mean "the database cannot be reached right now"."""
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeoutError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _handle_unexpected(exc: Exception) -> Response:
    if is_database_unavailable(exc):
        # The driver's first line says why (refused, timeout, certificate); never sent to clients.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        log.warning("database unavailable: %s: %s", type(exc).__name__, reason[0] if reason else "")
        return problem(
            503,
            "The database is unavailable; retry shortly.",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )
    log.exception("unhandled error", extra={"request_id": current_request_id()})
    return problem(500, "An unexpected error occurred.")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
