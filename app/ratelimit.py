"""Rate limits (fixed windows, as the ``limits`` library counts them): per token when authenticated, else per address.

Counters live in Redis in production so every worker and replica shares them. Each
process counts in batches: it admits up to LOCAL_BATCH - 1 hits on its own while its last
known count is at least LOCAL_BATCH below the limit, then takes them to Redis with the
next hit, in one Lua call that also carries every other counter of the request (a write:
the general and the write limit). So most requests cost no Redis round trip, and none
more than one. Each counter is limits' fixed window under limits' key: the first hit
starts the window (``EXPIRE``).

Accuracy with Redis up: a limit of at most LOCAL_BATCH per window is exact across all
workers and replicas; above that, at most LOCAL_BATCH - 1 requests per process (every
worker of every replica) pass over the limit in a window. A fixed window also lets a
burst across its boundary reach twice the limit within one window's length. If Redis
fails, requests keep being served, limited per process in memory (limits' own storage;
then up to the limit per process), and the failure is logged: an outage of the limiter
must not become an outage of the API. Redis is tried again after 1, 2, 4 ... 32 s.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

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
# Hits a process may admit on its own between two trips to Redis (see SharedWindows).
LOCAL_BATCH = 10

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Breach:
    limit: RateLimitItem
    retry_after: int


@dataclass
class _Window:
    """What this process knows of one counter in Redis."""

    ends_at: float  # monotonic time at which Redis drops the counter (the window's end)
    known: int  # the counter after this process's last trip to Redis
    pending: int = 0  # hits admitted here since that trip, not yet added in Redis
    syncing: int = 0  # trips to Redis under way (other threads): nothing is admitted alone meanwhile


class SharedWindows:
    """Fixed-window counters in Redis, counted in batches: a trip to Redis every ``batch`` hits at most.

    A process admits a hit on its own only while its last known count is at least ``batch``
    below the limit, and at most ``batch - 1`` hits in a row; the next hit takes them all to
    Redis in the same call. So a limit of at most ``batch`` per window is exact, and above
    that at most ``batch - 1`` requests per process (every worker of every replica) pass
    over the limit in a window. All of a request's counters go in one round trip.
    """

    # INCRBY every key; the first hits of a window set its expiry (what limits' own script
    # does). Returns each counter and the milliseconds left in its window.
    SCRIPT = """
    local n = #KEYS
    local result = {}
    for i, key in ipairs(KEYS) do
        local amount = tonumber(ARGV[n + i])
        local count = redis.call("INCRBY", key, amount)
        if count == amount then
            redis.call("EXPIRE", key, ARGV[i])
        end
        result[2 * i - 1] = count
        result[2 * i] = redis.call("PTTL", key)
    end
    return result
    """
    MAX_WINDOWS = 4096  # counters remembered per process; past that all are asked again once

    def __init__(self, client: redis.Redis, prefix: str = KEY_PREFIX, batch: int = LOCAL_BATCH) -> None:
        self.client = client
        self.prefix = prefix
        self.batch = batch
        self._hit_all = client.register_script(self.SCRIPT)
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def hit(self, limits: Sequence[RateLimitItem], key: str, scope: str) -> Breach | None:
        names = [f"{self.prefix}:{limit.key_for(key, scope)}" for limit in limits]
        now = time.monotonic()
        with self._lock:
            windows = [self._windows.get(name) for name in names]
            if all(self._admits_alone(window, limit, now) for window, limit in zip(windows, limits, strict=True)):
                for window in windows:
                    window.pending += 1  # type: ignore[union-attr]
                return None
            increments = [1 + (w.pending if w is not None and now < w.ends_at else 0) for w in windows]
            for window in windows:
                if window is not None:
                    window.pending = 0
                    window.syncing += 1
        try:
            result = self._hit_all(keys=names, args=[*(limit.get_expiry() for limit in limits), *increments])
        except BaseException:
            self._learn(names, limits, windows, None)
            raise
        return self._learn(names, limits, windows, result)

    def _admits_alone(self, window: _Window | None, limit: RateLimitItem, now: float) -> bool:
        return (
            window is not None
            and not window.syncing
            and now < window.ends_at
            and window.pending + 1 < self.batch
            and window.known + window.pending + 1 <= limit.amount - self.batch
        )

    def _learn(
        self,
        names: list[str],
        limits: Sequence[RateLimitItem],
        windows: list[_Window | None],
        result: list[int] | None,
    ) -> Breach | None:
        """After a trip to Redis (``result`` None: it failed), in one step: the trip is over, the counts known."""
        now = time.monotonic()
        breach = None
        with self._lock:
            for window in windows:
                if window is not None:
                    window.syncing -= 1
            if result is None:
                return None
            if len(self._windows) >= self.MAX_WINDOWS:
                self._windows.clear()
            for i, (name, limit) in enumerate(zip(names, limits, strict=True)):
                count, left_ms = result[2 * i], max(0, result[2 * i + 1])
                window = self._windows.get(name)
                if window is None:
                    self._windows[name] = _Window(now + left_ms / 1000, count)
                else:
                    # Trips of several threads may come back out of order: within a window the
                    # count only grows, so keep the highest (fewer hits admitted alone).
                    window.known = max(window.known, count) if now < window.ends_at else count
                    window.ends_at = now + left_ms / 1000
                if breach is None and count > limit.amount:
                    breach = Breach(limit, max(1, math.ceil(left_ms / 1000)))
        return breach


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
