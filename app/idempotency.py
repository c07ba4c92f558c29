"""Idempotent creates with the ``Idempotency-Key`` header (IETF draft, Stripe's semantics).

Same key and same body from the same caller: the stored response is replayed and
nothing new is created. Same key, other body: 422. Same key while the first request
is still running: 409. Keys live for 24 hours (``flask idempotency prune``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Response, request
from sqlalchemy.orm import Session

from . import crud
from .auth import current_principal
from .errors import ApiError
from .models import IDEMPOTENCY_KEY_MAX_LENGTH, IdempotencyKey
from .schemas import dumps

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
TTL = timedelta(hours=24)
KEY_PATTERN = rf"[\x20-\x7e]{{1,{IDEMPOTENCY_KEY_MAX_LENGTH}}}"
_KEY = re.compile(KEY_PATTERN)
ANONYMOUS = "-"

OPENAPI_PARAMETER: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": "Makes the create safe to retry: the same key and body replay the first response "
    "for 24 hours; another body with the key is a 422, a retry while the first is running a 409.",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": IDEMPOTENCY_KEY_MAX_LENGTH,
        "pattern": f"^{KEY_PATTERN}$",
    },
}


@dataclass
class Claim:
    """A key this request holds (locked for its transaction), or its stored replay."""

    principal: str
    key: str
    request_hash: str
    replay: Response | None = None

    def remember(self, session: Session, status: int, body: Any, location: str | None) -> None:
        """Store the response in the caller's transaction, beside what it created."""
        record = IdempotencyKey(
            principal=self.principal,
            key=self.key,
            request_hash=self.request_hash,
            status=status,
            response_body=dumps(body).decode(),
            location=location,
        )
        crud.idempotency.save_idempotency_key(session, record)


def _lock_id(principal: str, key: str) -> int:
    digest = hashlib.sha256(f"{principal}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def requested() -> bool:
    """Whether the request sent an idempotency key (then its create needs a transaction)."""
    return HEADER in request.headers


def claim(session: Session) -> Claim | None:
    """Claim the request's key, if it sent one; raise 409 or 422 when it cannot be used."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise ApiError(
            422,
            f"{HEADER} must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters.",
            errors=[{"loc": ["header", HEADER], "msg": "invalid idempotency key"}],
        )
    caller = current_principal()
    principal = caller.name if caller is not None else ANONYMOUS
    request_hash = hashlib.sha256(request.get_data()).hexdigest()
    if not crud.idempotency.try_lock_idempotency_key(session, _lock_id(principal, key)):
        raise ApiError(409, f"A request with this {HEADER} is still being processed; retry shortly.")
    stored = crud.idempotency.find_idempotency_key(session, principal, key, newer_than=datetime.now(UTC) - TTL)
    current = Claim(principal, key, request_hash)
    if stored is None:
        return current
    if stored.request_hash != request_hash:
        raise ApiError(
            422,
            f"This {HEADER} was already used with a different request body.",
            errors=[{"loc": ["header", HEADER], "msg": "reused with a different body"}],
        )
    replay = Response(stored.response_body, status=stored.status, mimetype="application/json")
    replay.headers[REPLAYED_HEADER] = "true"
    if stored.location:
        replay.headers["Location"] = stored.location
    current.replay = replay
    return current
