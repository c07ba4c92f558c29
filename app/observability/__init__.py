"""Observability: structured logs, the per-request access line, Prometheus metrics."""

from __future__ import annotations

from flask import Flask

from ..config import Settings
from . import access, logs, metrics


def init_app(app: Flask, settings: Settings, log_stream: logs.Stream = "stdout") -> access.AccessRecorder:
    """Wire logging and ``GET /metrics`` into ``app``; the access line's recorder."""
    logs.configure_logging(settings.log_level, settings.log_format, log_stream)
    return access.AccessRecorder(metrics.init_app(app, settings))
