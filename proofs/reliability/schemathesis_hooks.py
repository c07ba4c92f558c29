"""Schemathesis hooks for the fuzz run (``SCHEMATHESIS_HOOKS=proofs.reliability.schemathesis_hooks``)."""

from __future__ import annotations

import random
import re
import uuid
from typing import Any
from urllib.parse import quote, urlencode

import schemathesis

from app.request_limits import SERVER_REQUEST_TARGET_LIMIT
from app.schemas import decode_cursor, encode_cursor

HEADER = "Idempotency-Key"
_VALID_KEY = re.compile(r"[\x20-\x7e]{1,255}")
CURSOR_MAX_LENGTH = 64


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    """Give schema-valid values the meaning the schema cannot state; leave invalid ones alone."""
    _unique_idempotency_key(case)
    _cursor_issued_by_the_server(case)
    _within_the_server_request_line_limit(case)


# Method, spaces, "HTTP/1.1" and a margin for the client's own encoding differences.
_REQUEST_LINE_OVERHEAD = 64


def _within_the_server_request_line_limit(case: Any) -> None:
    """Cut over-long query values so the request target fits the server's limit (65,534 bytes).

    A longer one never reaches the app: the server refuses it with its own plain 414, by
    design (tests/test_request_limits.py checks the server's bounds), outside the OpenAPI
    contract. Queries between MAX_QUERY_STRING_BYTES and that limit still reach the
    app, so its problem+json 414 stays fuzzed.
    """
    query = case.query
    if not query:
        return
    budget = SERVER_REQUEST_TARGET_LIMIT - _REQUEST_LINE_OVERHEAD - len(quote(case.formatted_path))
    while len(urlencode(query, doseq=True)) > budget:
        name = max(query, key=lambda key: len(str(query[key])))
        value = query[name]
        if isinstance(value, (str, list)) and len(value) > 1:
            query[name] = value[: len(value) // 2]
        else:
            del query[name]


def _unique_idempotency_key(case: Any) -> None:
    """Make every valid Idempotency-Key unique.

    Generated keys repeat ("0", "00"...). A repeated key with another body is a 422 by
    design, and with the same body a replay of a 201 for an item a later case may have
    deleted: both correct, and both reported as failures by checks that do not know the
    header's meaning. Invalid keys are left alone, so their 422 is still tested.
    """
    headers = case.headers
    if not headers:
        return
    key = headers.get(HEADER)
    if isinstance(key, str) and _VALID_KEY.fullmatch(key):
        suffix = uuid.uuid4().hex
        headers[HEADER] = f"{key[: 255 - len(suffix) - 1]}-{suffix}"


def _cursor_issued_by_the_server(case: Any) -> None:
    """Replace a well-formed ``cursor`` the server never issued by one it could have.

    The cursor is opaque: any string up to 64 characters fits its schema, but only the
    server's own ``next_cursor`` values are accepted (422 otherwise, by design and tested
    in tests/api/test_items_list.py). Over-long or non-string cursors stay, so their 422 is fuzzed.
    """
    query = case.query
    cursor = query.get("cursor") if query else None
    if not isinstance(cursor, str) or len(cursor) > CURSOR_MAX_LENGTH:
        return
    try:
        decode_cursor(cursor)
    except ValueError:
        query["cursor"] = encode_cursor(random.randrange(1, 2**63))
