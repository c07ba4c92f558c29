"""Rate limits (Flask-Limiter): per token when authenticated, else per client address.

Counters live in Redis in production so every worker and replica shares them. If
Redis fails, requests keep being served (limited per process in memory) and the
failure is logged: an outage of the limiter must not become an outage of the API.
"""

from __future__ import annotations

import time

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter, RateLimitExceeded

from .auth import current_principal
from .config import Settings
from .errors import problem

WRITE_ENDPOINTS = ("items.create_item", "items.update_item", "items.delete_item")
# Probes, docs and metrics are never limited: a load balancer must always get an answer.
EXEMPT_BLUEPRINTS = frozenset({"health", "openapi", "swagger_ui", "metrics"})
REDIS_TIMEOUT_SECONDS = 0.25


def _client_key() -> str:
    principal = current_principal()
    if principal is not None:
        return f"token:{principal.name}"
    # remote_addr already honours TRUSTED_PROXY_HOPS (ProxyFix), and nothing else.
    return f"addr:{request.remote_addr}"


def _exempt() -> bool:
    return request.blueprint in EXEMPT_BLUEPRINTS


def _too_many_requests(exc: RateLimitExceeded) -> Response:
    # The window's reset time is read only now, on a breach, not on every request.
    limit = current_app.extensions["items_api_limiter"].current_limit
    retry_after = max(1, int(limit.reset_at - time.time())) if limit is not None else 1
    return problem(429, f"Rate limit exceeded: {exc.description}.", headers={"Retry-After": str(retry_after)})


def init_app(app: Flask, settings: Settings) -> Limiter:
    """Create the app's limiter. Call after the blueprints are registered."""
    storage_options: dict[str, str | int] = {}
    if settings.redis_url:
        storage_options = {
            "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,  # type: ignore[dict-item]
            "socket_timeout": REDIS_TIMEOUT_SECONDS,  # type: ignore[dict-item]
        }
    limiter = Limiter(
        _client_key,
        app=app,
        enabled=settings.rate_limit_enabled,
        default_limits=[settings.rate_limit],
        storage_uri=settings.redis_url or "memory://",
        storage_options=storage_options,
        strategy="fixed-window",
        key_prefix="items-api",
        # No X-RateLimit-* headers: they cost two more Redis round trips per request
        # (docs/performance.md). A 429 still says when to retry.
        headers_enabled=False,
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )
    # Flask-Limiter's decorators hold the limiter weakly, and a disabled limiter does
    # not register itself on the app: without this reference writes fail (ReferenceError).
    app.extensions["items_api_limiter"] = limiter
    limiter.request_filter(_exempt)
    app.register_error_handler(RateLimitExceeded, _too_many_requests)
    writes = limiter.limit(settings.rate_limit_writes, override_defaults=False)
    for endpoint in WRITE_ENDPOINTS:
        app.view_functions[endpoint] = writes(app.view_functions[endpoint])  # type: ignore[assignment]
    return limiter
