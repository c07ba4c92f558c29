"""Rate limits (fixed windows, as the ``limits`` library counts them): per token when authenticated, else per address.

Counters live in Redis in production so every worker and replica shares them: one Lua
call increments every counter a request counts against (a write: the general and the
write limit), so a request costs one Redis round trip whatever the number of limits.
Each counter is limits' fixed window under limits' key: the first hit starts the window
(``EXPIRE``). Accuracy with Redis up: exact, at most the limit per window and key across all
replicas (a fixed window: a burst across a window boundary can reach twice the limit in
one window's length). If Redis fails, requests keep being served, limited per process in
memory (limits' own storage; then up to the limit per process), and the failure is
logged: an outage of the limiter must not become an outage of the API. Redis is tried
again after 1, 2, 4 ... 32 s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import redis
from flask import Flask, current_app, request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
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


class SharedWindows:
    """Fixed-window counters in Redis: all of a request's counters in one round trip."""

    # INCR every key; the first hit of a window sets its expiry (what limits' own script does).
    SCRIPT = """
    local counts = {}
    for i, key in ipairs(KEYS) do
        local count = redis.call("INCR", key)
        if count == 1 then
            redis.call("EXPIRE", key, ARGV[i])
        end
        counts[i] = count
    end
    return counts
    """

    def __init__(self, client: redis.Redis, prefix: str = KEY_PREFIX) -> None:
        self.client = client
        self.prefix = prefix
        self._hit_all = client.register_script(self.SCRIPT)

    def hit(self, limits: Sequence[RateLimitItem], key: str, scope: str) -> Breach | None:
        keys = [f"{self.prefix}:{limit.key_for(key, scope)}" for limit in limits]
        counts = self._hit_all(keys=keys, args=[limit.get_expiry() for limit in limits])
        for limit, name, count in zip(limits, keys, counts, strict=True):
            if count > limit.amount:
                seconds_left = cast("int", self.client.ttl(name))
                return Breach(limit, max(1, seconds_left))
        return None


class RateLimiter:
    """Counters shared through Redis, with a per-process fallback (in memory) while it fails."""

    def __init__(self, shared: SharedWindows | None, reads: list[RateLimitItem], writes: list[RateLimitItem]) -> None:
        self.shared = shared
        self.local = FixedWindowRateLimiter(MemoryStorage())
        self.reads = reads
        self.writes = [*reads, *writes]  # a write counts against both
        self._shared_again_at = 0.0  # monotonic time from which to try the shared storage again
        self._backoff = 1.0

    def hit(self, key: str, endpoint: str | None) -> Breach | None:
        """Count one request of ``key`` on ``endpoint``; the breached limit, if any."""
        scope = endpoint or UNMATCHED
        limits = self.writes if scope in WRITE_ENDPOINTS else self.reads
        if self.shared is None or (self._shared_again_at and time.monotonic() < self._shared_again_at):
            return self._hit_locally(limits, key, scope)
        try:
            breach = self.shared.hit(limits, key, scope)
        except redis.RedisError as exc:
            self._storage_failed(exc)
            return self._hit_locally(limits, key, scope)
        if self._shared_again_at:
            log.info("rate limit storage answers again: limits are shared again")
            self._shared_again_at, self._backoff = 0.0, 1.0
        return breach

    def _hit_locally(self, limits: list[RateLimitItem], key: str, scope: str) -> Breach | None:
        for limit in limits:
            if not self.local.hit(limit, key, scope):
                reset_at = self.local.get_window_stats(limit, key, scope).reset_time
                return Breach(limit, max(1, int(reset_at - time.time())))
        return None

    def _storage_failed(self, exc: redis.RedisError) -> None:
        log.warning(
            "rate limit storage unreachable (%s): limiting per process for %.0f s",
            type(exc).__name__,
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


def shared_windows(settings: Settings) -> SharedWindows | None:
    """Counters in Redis when REDIS_URL is set; None: each process counts alone."""
    if not settings.redis_url:
        return None
    client = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
    )
    return SharedWindows(client)


def init_app(app: Flask, settings: Settings) -> RateLimiter | None:
    """Check the limits before every view (after authentication, which keys them)."""
    if not settings.rate_limit_enabled:
        return None
    limiter = RateLimiter(
        shared_windows(settings), parse_many(settings.rate_limit), parse_many(settings.rate_limit_writes)
    )
    app.extensions["rate_limiter"] = limiter
    app.before_request(_check)
    return limiter
