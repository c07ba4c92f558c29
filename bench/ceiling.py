"""The "ceiling": a framework-free WSGI callable answering the API's benchmarked routes.

Same queries, same JSON (field names, RFC 3339 UTC timestamps, cursor encoding) as the
Items API, with a psycopg 3 pool, autocommit reads, one round trip per request and
orjson. What the API costs beyond this is framework, ORM, validation and middleware.

Serve from bench/: ``granian --interface wsgi ceiling:app`` (or ``gunicorn ceiling:app``)
with ``CEILING_DATABASE_URL=postgresql://...`` and ``CEILING_POOL_SIZE``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

SELECT_FIRST_PAGE = "SELECT id, title, description, created_at, updated_at FROM items ORDER BY id DESC LIMIT %s"
SELECT_PAGE_BELOW = (
    "SELECT id, title, description, created_at, updated_at FROM items WHERE id < %s ORDER BY id DESC LIMIT %s"
)
SELECT_ONE = "SELECT id, title, description, created_at, updated_at FROM items WHERE id = %s"
INSERT_ONE = (
    "INSERT INTO items (title, description) VALUES (%s, %s) RETURNING id, title, description, created_at, updated_at"
)

APPLICATION_NAME = "items-ceiling"  # tells its PostgreSQL backends from the API's
MAX_ID = 2**63 - 1
TITLE_MAX_LENGTH = 200
DESCRIPTION_MAX_LENGTH = 5000
_TITLE_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")
_DESCRIPTION_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_ITEM_PATH = re.compile(r"/items/([0-9]{1,19})")
_JSON = [("Content-Type", "application/json")]
_HEALTH = orjson.dumps({"status": "ok", "environment": "production"})

_pool: ConnectionPool | None = None
_pool_lock = threading.Lock()


def _connections() -> ConnectionPool:
    """The pool of this worker process, opened on first use (so after any fork)."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                size = int(os.environ.get("CEILING_POOL_SIZE", "4"))
                _pool = ConnectionPool(
                    os.environ["CEILING_DATABASE_URL"],
                    min_size=size,
                    max_size=size,
                    kwargs={
                        "autocommit": True,
                        "row_factory": dict_row,
                        "options": "-c TimeZone=UTC",
                        "application_name": APPLICATION_NAME,
                    },
                    open=True,
                )
    return _pool


def _dumps(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        return None
    prefix, _, digits = raw.partition(":")
    if prefix != "id" or not digits.isdigit() or not 0 < int(digits) <= MAX_ID:
        return None
    return int(digits)


def _problem(start_response: StartResponse, status: str, detail: str) -> list[bytes]:
    code = int(status.split(" ", 1)[0])
    body = {"type": "about:blank", "title": status.split(" ", 1)[1], "status": code, "detail": detail}
    start_response(status, [("Content-Type", "application/problem+json")])
    return [orjson.dumps(body)]


def _list(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    params = dict(part.partition("=")[::2] for part in environ.get("QUERY_STRING", "").split("&") if part)
    limit_text = params.get("limit", "20")
    limit = int(limit_text) if limit_text.isascii() and limit_text.isdigit() else 0
    before_id = _decode_cursor(params["cursor"]) if "cursor" in params else None
    if not 1 <= limit <= 100 or ("cursor" in params and before_id is None):
        return _problem(start_response, "422 Unprocessable Content", "The query string is invalid.")
    with _connections().connection() as conn:
        if before_id is None:
            rows = conn.execute(SELECT_FIRST_PAGE, (limit + 1,)).fetchall()
        else:
            rows = conn.execute(SELECT_PAGE_BELOW, (before_id, limit + 1)).fetchall()
    more = len(rows) > limit
    items = rows[:limit]
    start_response("200 OK", _JSON)
    return [_dumps({"items": items, "next_cursor": encode_cursor(items[-1]["id"]) if more else None})]


def _get(item_id: int, start_response: StartResponse) -> list[bytes]:
    with _connections().connection() as conn:
        row = conn.execute(SELECT_ONE, (item_id,)).fetchone() if item_id <= MAX_ID else None
    if row is None:
        return _problem(start_response, "404 Not Found", f"Item {item_id} does not exist.")
    start_response("200 OK", _JSON)
    return [_dumps(row)]


def _valid_body(payload: object) -> tuple[str, str | None] | None:
    """The same rules as the API's ``ItemIn``; None when the body breaks one."""
    if not isinstance(payload, dict) or not set(payload) <= {"title", "description"}:
        return None
    title, description = payload.get("title"), payload.get("description")
    if not isinstance(title, str):
        return None
    title = title.strip()
    if not 1 <= len(title) <= TITLE_MAX_LENGTH or _TITLE_FORBIDDEN.search(title):
        return None
    if description is not None and (
        not isinstance(description, str)
        or len(description) > DESCRIPTION_MAX_LENGTH
        or _DESCRIPTION_FORBIDDEN.search(description)
    ):
        return None
    return title, description


def _create(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    if environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip() != "application/json":
        return _problem(start_response, "415 Unsupported Media Type", "The request body must be JSON.")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    try:
        payload = orjson.loads(environ["wsgi.input"].read(length))
    except orjson.JSONDecodeError:
        return _problem(start_response, "400 Bad Request", "The request body is not valid JSON (UTF-8).")
    fields = _valid_body(payload)
    if fields is None:
        return _problem(start_response, "422 Unprocessable Content", "The request body is invalid.")
    with _connections().connection() as conn:
        row = conn.execute(INSERT_ONE, fields).fetchone()
    assert row is not None  # noqa: S101 (INSERT ... RETURNING always returns the row)
    start_response("201 Created", [*_JSON, ("Location", f"/items/{row['id']}")])
    return [_dumps(row)]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The WSGI entry point."""
    path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
    if path == "/items":
        if method == "GET":
            return _list(environ, start_response)
        if method == "POST":
            return _create(environ, start_response)
    elif path == "/health" and method == "GET":
        start_response("200 OK", _JSON)
        return [_HEALTH]
    elif (match := _ITEM_PATH.fullmatch(path)) and method == "GET":
        return _get(int(match[1]), start_response)
    return _problem(start_response, "404 Not Found", "The requested URL was not found on the server.")
