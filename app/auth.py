"""Bearer API tokens: issuing them, storing only a hash, and checking scopes per request."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import TypeVar

from flask import Flask, current_app, g, request
from flask.typing import ResponseReturnValue

from . import crud
from .config import Settings
from .db import get_session
from .errors import ApiError

TOKEN_PATTERN = re.compile(r"itm_(?P<key_id>[0-9a-f]{16})_[A-Za-z0-9_-]{43}")
REALM = 'Bearer realm="items-api"'

F = TypeVar("F", bound=Callable[..., ResponseReturnValue])


@dataclass(frozen=True)
class NewToken:
    token: str
    key_id: str
    token_hash: str


def hash_token(token: str) -> str:
    # The secret has 256 bits of entropy, so a fast hash is enough (no key stretching).
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> NewToken:
    key_id = secrets.token_hex(8)
    token = f"itm_{key_id}_{secrets.token_urlsafe(32)}"
    return NewToken(token, key_id, hash_token(token))


@dataclass(frozen=True)
class Principal:
    name: str
    scope: str

    def allows(self, needed: str) -> bool:
        return needed == "read" or self.scope == "write"


def _load_principal() -> None:
    """Resolve ``Authorization: Bearer`` before rate limiting, so limits key on the token."""
    header = request.headers.get("Authorization")
    if header is None:
        return
    scheme, _, credentials = header.partition(" ")
    credentials = credentials.strip()
    match = TOKEN_PATTERN.fullmatch(credentials) if scheme.lower() == "bearer" else None
    if match is None:
        return
    token = crud.tokens.find_token(get_session(), match["key_id"])
    if token is None or token.revoked_at is not None:
        return
    if hmac.compare_digest(token.token_hash, hash_token(credentials)):
        g.principal = Principal(token.name, token.scope)


def current_principal() -> Principal | None:
    """The authenticated caller of this request, if it sent a valid token."""
    principal: Principal | None = g.get("principal")
    return principal


def require_scope(scope: str) -> Callable[[F], F]:
    """Allow the view only for a token with ``scope`` (reads may be public, see READS_REQUIRE_AUTH)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(*args: object, **kwargs: object) -> ResponseReturnValue:
            settings: Settings = current_app.config["SETTINGS"]
            public = scope == "read" and not settings.reads_require_auth
            if not (settings.auth_disabled or public):
                _check(scope)
            return view(*args, **kwargs)

        guarded.required_scope = scope  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    return decorate


def _check(scope: str) -> None:
    principal = current_principal()
    if principal is None:
        invalid = "Authorization" in request.headers
        raise ApiError(
            401,
            "The bearer token is invalid or revoked." if invalid else "A bearer token is required.",
            headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"' if invalid else REALM},
        )
    if not principal.allows(scope):
        raise ApiError(
            403,
            f"This token lacks the {scope} scope.",
            headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{scope}"'},
        )


def init_app(app: Flask) -> None:
    app.before_request(_load_principal)
