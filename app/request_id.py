"""``X-Request-ID``: keep the client's when it is a sane token, else mint one."""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

HEADER = "X-Request-ID"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def current_request_id() -> str:
    request_id: str | None = g.get("request_id")
    if request_id is None:
        incoming = request.headers.get(HEADER, "")
        request_id = incoming if _SANE.fullmatch(incoming) else uuid.uuid4().hex
        g.request_id = request_id
    return request_id


def _add_header(response: Response) -> Response:
    response.headers[HEADER] = current_request_id()
    return response


def init_app(app: Flask) -> None:
    app.after_request(_add_header)
