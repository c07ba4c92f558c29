"""Bounds on what the app parses from a URL, and on how much a 4xx reports back.

The production server refuses request lines over 8 KiB itself (gunicorn.conf.py); below
that, the app refuses query strings over ``MAX_QUERY_STRING_BYTES`` with a problem+json
414 before anything parses them, so no query costs more than a few KiB of work.
"""

from __future__ import annotations

from flask import Flask, request

from .errors import ApiError

# gunicorn's largest request line (and header line). MAX_QUERY_STRING_BYTES stays below
# it (at most 6 KiB), so the app, not the server, answers the over-long queries it sees.
SERVER_REQUEST_LINE_LIMIT = 8190


def init_app(app: Flask) -> None:
    config = app.config  # this app's, read per request without the current_app lookup

    def check_query_string() -> None:
        limit: int = config["MAX_QUERY_STRING_BYTES"]
        if len(request.query_string) > limit:
            raise ApiError(414, f"The query string is longer than {limit} bytes.")

    # First of the app's before_request hooks: nothing parses the query before this runs.
    app.before_request_funcs.setdefault(None, []).insert(0, check_query_string)
