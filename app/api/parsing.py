"""Turn the raw request into validated schema objects, or a 4xx problem."""

from __future__ import annotations

from typing import TypeVar

import orjson
from flask import request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from ..errors import ApiError
from ..schemas import field_errors

M = TypeVar("M", bound=BaseModel)


def _read_body() -> bytes:
    data = request.get_data()  # cached: the idempotency check hashes the same bytes
    # With a Content-Length werkzeug answers 413 itself; a chunked body is cut at the
    # limit instead, so a body that fills the limit exactly is taken as too large.
    limit = request.max_content_length
    if limit is not None and request.content_length is None and len(data) >= limit:
        raise RequestEntityTooLarge()
    return data


def json_body(model: type[M]) -> M:
    """Validate a JSON object body against ``model``: 415, 400, or 422 otherwise."""
    if request.mimetype != "application/json":
        raise ApiError(415, "The request body must be JSON, sent with Content-Type: application/json.")
    try:
        payload = orjson.loads(_read_body())
    except orjson.JSONDecodeError:
        raise ApiError(400, "The request body is not valid JSON (UTF-8).") from None
    if not isinstance(payload, dict):
        raise ApiError(
            422,
            "The request body must be a JSON object.",
            errors=[{"loc": ["body"], "msg": "must be a JSON object"}],
        )
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise ApiError(422, "The request body is invalid.", errors=field_errors(exc, "body")) from None


def query_args(model: type[M]) -> M:
    """Validate the query string against ``model``; a repeated parameter is an error.

    The query is at most MAX_QUERY_STRING_BYTES (app/request_limits.py) and the problem
    reports a handful of errors (app/errors.py), so this costs little whatever the input.
    """
    args = request.args
    repeated = [name for name, values in args.lists() if len(values) > 1]
    if repeated:
        raise ApiError(
            422,
            "A query parameter was given more than once.",
            errors=[{"loc": ["query", name], "msg": "must be given at most once"} for name in repeated],
        )
    try:
        return model.model_validate(args.to_dict())
    except ValidationError as exc:
        raise ApiError(422, "The query string is invalid.", errors=field_errors(exc, "query")) from None
