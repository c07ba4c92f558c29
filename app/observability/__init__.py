"""Observability: structured logs, the per-request access line, Prometheus metrics."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from ..config import Settings
from . import access, logs, metrics


def init_app(app: Flask, settings: Settings, log_stream: logs.Stream = "stdout") -> access.AccessRecorder:
    """Wire logging, proxy trust and ``GET /metrics`` into ``app``; the access line's recorder."""
    logs.configure_logging(settings.log_level, settings.log_format, log_stream)
    if settings.trusted_proxy_hops:
        # Believe exactly as many X-Forwarded-For/-Proto entries as there are proxies of
        # ours in front (Caddy: 1); a client cannot forge its address past them.
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    return access.AccessRecorder(metrics.init_app(app, settings))
