"""``X-Request-ID``: keep the client's when it is a sane token, else mint one."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from flask import request

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

HEADER = "X-Request-ID"
_ENVIRON_KEY = "items_api.request_id"
_INCOMING = "HTTP_X_REQUEST_ID"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_for(environ: WSGIEnvironment) -> str:
    """The request's id, decided once and kept in its environ (the WSGI layer sends it back)."""
    request_id: str | None = environ.get(_ENVIRON_KEY)
    if request_id is None:
        incoming = environ.get(_INCOMING, "")
        request_id = incoming if _SANE.fullmatch(incoming) else uuid.uuid4().hex
        environ[_ENVIRON_KEY] = request_id
    return request_id


def current_request_id() -> str:
    return request_id_for(request.environ)
