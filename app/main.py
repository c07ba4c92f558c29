"""The application factory: ``flask --app app.main:create_app``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click
from flask import Flask

from . import (
    auth,
    cli,
    db,
    engine,
    errors,
    idempotency_prune,
    middleware,
    observability,
    openapi,
    ratelimit,
    request_limits,
    security_headers,
)
from .api import health, items
from .config import ConfigError, Settings, load_settings
from .json_provider import OrjsonProvider


class ItemsApi(Flask):
    """Flask, asking once per view or hook whether it is ``async def``, not on every request.

    Flask calls ``ensure_sync`` for the view and each hook of every request, and each call
    asks ``inspect.iscoroutinefunction`` (about 6 % of a ``/health`` request); the answer
    for a given function never changes.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ensured: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        ensured = self._ensured.get(func)
        if ensured is None:
            ensured = self._ensured[func] = super().ensure_sync(func)
        return ensured


def create_app(config: Mapping[str, object] | None = None) -> Flask:
    """Build the app. ``config`` overrides environment variables by name (for tests)."""
    app = ItemsApi(__name__, instance_relative_config=True)
    # Built by the flask command (a click context is active): its stdout is the command's result.
    for_command = click.get_current_context(silent=True) is not None
    settings = _settings(config, app.instance_path, for_command)
    app.config.from_mapping(settings.flask_config())
    app.json = OrjsonProvider(app)
    if settings.database_url.get_backend_name() == "sqlite":
        # The embedded default lives under instance/, which may not exist yet.
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    db.init_app(app, settings)
    recorder = observability.init_app(app, settings, log_stream="stderr" if for_command else "stdout")
    engine.log_connection_budget(settings)
    middleware.init_app(app, recorder)  # request id, security headers, metrics, access line: one pass
    request_limits.init_app(app)
    security_headers.init_app(app, settings)
    errors.register_error_handlers(app)
    auth.init_app(app, settings)  # before the limiter: limits key on the authenticated token
    app.url_map.converters["item_id"] = items.ItemIdConverter
    app.register_blueprint(health.bp)
    app.register_blueprint(items.bp)
    openapi.init_app(app)
    ratelimit.init_app(app, settings)
    cli.init_app(app)
    idempotency_prune.init_app(app, settings)
    return app


def _settings(config: Mapping[str, object] | None, instance_path: str, for_command: bool) -> Settings:
    try:
        return load_settings(config, instance_path=instance_path)
    except ConfigError as exc:
        if not for_command:
            raise
        # The one line that names the variable ("Error: ..."), not a traceback around it.
        raise click.ClickException(str(exc)) from None
