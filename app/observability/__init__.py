"""Observability: structured logs, the per-request access line, Prometheus metrics."""

from __future__ import annotations

from flask import Flask

from ..config import Settings
from ..trusted_proxy import TrustedProxyFix
from . import access, logs, metrics


def init_app(app: Flask, settings: Settings, log_stream: logs.Stream = "stdout") -> access.AccessRecorder:
    """Wire logging, proxy trust and ``GET /metrics`` into ``app``; the access line's recorder."""
    logs.configure_logging(settings.log_level, settings.log_format, log_stream)
    if settings.trusted_proxy_hops:
        # Believe exactly as many X-Forwarded-For/-Proto entries as there are proxies of
        # ours in front (Caddy: 1), and only from them (FORWARDED_ALLOW_IPS): a client
        # cannot forge its address past them, nor by reaching the port directly.
        app.wsgi_app = TrustedProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, settings.trusted_proxy_hops, settings.forwarded_allow_networks
        )
    return access.AccessRecorder(metrics.init_app(app, settings))
