"""Bearer API tokens: issuing them, storing only a hash, and checking scopes per request."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import TypeVar

from flask import Flask, current_app, g, request
from flask.typing import ResponseReturnValue

from . import crud
from .config import Settings
from .db import read
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


class TokenCache:
    """Tokens by key id for TOKEN_CACHE_SECONDS, per process: a revocation takes effect within that time.

    Only tokens found are kept (unknown key ids cannot fill it), at most MAX_ENTRIES; the
    secret is still checked against the stored hash on every request.
    """

    MAX_ENTRIES = 4096

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._entries: dict[str, tuple[float, str, Principal | None]] = {}

    def get(self, key_id: str) -> tuple[str, Principal | None] | None:
        entry = self._entries.get(key_id)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1], entry[2]

    def put(self, key_id: str, token_hash: str, principal: Principal | None) -> tuple[str, Principal | None]:
        """Remember a token (``principal`` None when it is revoked); returns what ``get`` would."""
        if self.seconds > 0:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()  # rare: more live tokens than entries; all re-read once
            self._entries[key_id] = (time.monotonic() + self.seconds, token_hash, principal)
        return token_hash, principal


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
    cache: TokenCache = current_app.extensions["token_cache"]
    key_id = match["key_id"]
    found = cache.get(key_id)
    if found is None:
        # On the request's reader, which its read (or single-statement write) then uses too.
        token = read(lambda reader: crud.tokens.find_token(reader, key_id))
        if token is None:
            return
        token_hash, name, scope, revoked_at = token
        found = cache.put(key_id, token_hash, Principal(name, scope) if revoked_at is None else None)
    token_hash, principal = found
    if principal is not None and hmac.compare_digest(token_hash, hash_token(credentials)):
        g.principal = principal


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


def init_app(app: Flask, settings: Settings) -> None:
    app.extensions["token_cache"] = TokenCache(settings.token_cache_seconds)
    app.before_request(_load_principal)
