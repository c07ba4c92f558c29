"""Bounds on what the app parses from a URL, and on how much a 4xx reports back.

The production server refuses request targets over 64 KiB and heads (request line and
headers) not complete after about 64 KiB itself (app/server.py); below that, the app refuses query
strings over ``MAX_QUERY_STRING_BYTES`` with a problem+json 414 before anything parses
them, so no query costs more than a few KiB of work.
"""

from __future__ import annotations

from flask import Flask, request

from .errors import ApiError

# The longest request target the server's HTTP parser (hyper, in granian) passes on; a
# longer one gets its own plain 414. MAX_QUERY_STRING_BYTES stays far below it (at most
# 6 KiB), so the app, not the server, answers the over-long queries clients send.
SERVER_REQUEST_TARGET_LIMIT = 65_534


def init_app(app: Flask) -> None:
    config = app.config  # this app's, read per request without the current_app lookup

    def check_query_string() -> None:
        limit: int = config["MAX_QUERY_STRING_BYTES"]
        if len(request.query_string) > limit:
            raise ApiError(414, f"The query string is longer than {limit} bytes.")

    # First of the app's before_request hooks: nothing parses the query before this runs.
    app.before_request_funcs.setdefault(None, []).insert(0, check_query_string)
