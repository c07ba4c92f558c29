"""Rate limits (the ``limits`` library, fixed window): per token when authenticated, else per address.

Counters live in Redis in production so every worker and replica shares them: one
atomic ``INCR`` (limits' Lua script, one round trip) per configured limit and request.
Accuracy with Redis up: exact, at most the limit per window and key across all replicas
(a fixed window: a burst across a window boundary can reach twice the limit in one
window's length). If Redis fails, requests keep being served, limited per process in
memory (then up to the limit per process), and the failure is logged: an outage of the
limiter must not become an outage of the API. Redis is tried again after 1, 2, 4 ... 32 s.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from flask import Flask, current_app, request
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import FixedWindowRateLimiter

from .auth import current_principal
from .config import Settings
from .errors import ApiError

WRITE_ENDPOINTS = frozenset({"items.create_item", "items.update_item", "items.delete_item"})
# Probes, docs and metrics are never limited: a load balancer must always get an answer.
EXEMPT_BLUEPRINTS = frozenset({"health", "openapi", "swagger_ui", "metrics"})
UNMATCHED = "<unmatched>"
REDIS_TIMEOUT_SECONDS = 0.25
KEY_PREFIX = "items-api"
MAX_BACKOFF_SECONDS = 32.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Breach:
    limit: RateLimitItem
    retry_after: int


class RateLimiter:
    """Fixed-window counters in shared storage, with a per-process fallback while it fails."""

    def __init__(self, storage: Storage, reads: list[RateLimitItem], writes: list[RateLimitItem]) -> None:
        self.shared = FixedWindowRateLimiter(storage) if not isinstance(storage, MemoryStorage) else None
        self.local = FixedWindowRateLimiter(MemoryStorage() if self.shared is not None else storage)
        self.reads = reads
        self.writes = [*reads, *writes]  # a write counts against both
        self._shared_again_at = 0.0  # monotonic time from which to try the shared storage again
        self._backoff = 1.0

    def hit(self, key: str, endpoint: str | None) -> Breach | None:
        """Count one request of ``key`` on ``endpoint``; the breached limit, if any."""
        scope = endpoint or UNMATCHED
        limits = self.writes if scope in WRITE_ENDPOINTS else self.reads
        limiter = self._limiter()
        try:
            return self._hit(limiter, limits, key, scope)
        except StorageError as exc:
            self._storage_failed(exc)
            return self._hit(self.local, limits, key, scope)

    def _limiter(self) -> FixedWindowRateLimiter:
        if self.shared is None or (self._shared_again_at and time.monotonic() < self._shared_again_at):
            return self.local
        return self.shared

    def _hit(self, limiter: FixedWindowRateLimiter, limits: list[RateLimitItem], key: str, scope: str) -> Breach | None:
        for limit in limits:
            if not limiter.hit(limit, key, scope):
                reset_at = limiter.get_window_stats(limit, key, scope).reset_time
                return Breach(limit, max(1, int(reset_at - time.time())))
        if limiter is self.shared and self._shared_again_at:
            log.info("rate limit storage answers again: limits are shared again")
            self._shared_again_at, self._backoff = 0.0, 1.0
        return None

    def _storage_failed(self, exc: StorageError) -> None:
        log.warning(
            "rate limit storage unreachable (%s): limiting per process for %.0f s",
            type(exc.storage_error).__name__,
            self._backoff,
        )
        self._shared_again_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF_SECONDS)


def _client_key() -> str:
    principal = current_principal()
    if principal is not None:
        return f"token:{principal.name}"
    # remote_addr already honours TRUSTED_PROXY_HOPS (ProxyFix), and nothing else.
    return f"addr:{request.remote_addr}"


def _check() -> None:
    if request.blueprint in EXEMPT_BLUEPRINTS:
        return
    limiter: RateLimiter = current_app.extensions["rate_limiter"]
    breach = limiter.hit(_client_key(), request.endpoint)
    if breach is not None:
        raise ApiError(429, f"Rate limit exceeded: {breach.limit}.", headers={"Retry-After": str(breach.retry_after)})


def build_storage(settings: Settings) -> Storage:
    if not settings.redis_url:
        return MemoryStorage()
    return RedisStorage(
        settings.redis_url,
        key_prefix=KEY_PREFIX,
        wrap_exceptions=True,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
    )


def init_app(app: Flask, settings: Settings) -> RateLimiter | None:
    """Check the limits before every view (after authentication, which keys them)."""
    if not settings.rate_limit_enabled:
        return None
    limiter = RateLimiter(
        build_storage(settings), parse_many(settings.rate_limit), parse_many(settings.rate_limit_writes)
    )
    app.extensions["rate_limiter"] = limiter
    app.before_request(_check)
    return limiter
