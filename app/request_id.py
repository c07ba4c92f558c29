"""``X-Request-ID``: keep the client's when it is a sane token, else mint one."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from flask import request

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

HEADER = "X-Request-ID"
_ENVIRON_KEY = "items_api.request_id"
_INCOMING = "HTTP_X_REQUEST_ID"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def new_request_id() -> str:
    """``uuid.uuid4().hex`` without building a UUID object (minted for most requests).

    The same 16 bytes of os.urandom with RFC 9562's version (4) and variant (10xx) bits,
    as ``uuid.UUID(bytes=..., version=4)`` sets them; uuid.UUID's constructor alone cost
    about 3 us per request.
    """
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    return raw.hex()


def request_id_for(environ: WSGIEnvironment) -> str:
    """The request's id, decided once and kept in its environ (the WSGI layer sends it back)."""
    request_id: str | None = environ.get(_ENVIRON_KEY)
    if request_id is None:
        incoming = environ.get(_INCOMING, "")
        request_id = incoming if _SANE.fullmatch(incoming) else new_request_id()
        environ[_ENVIRON_KEY] = request_id
    return request_id


def current_request_id() -> str:
    return request_id_for(request.environ)
