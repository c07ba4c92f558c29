"""The application factory: ``flask --app app.main:create_app``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

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


def create_app(config: Mapping[str, object] | None = None) -> Flask:
    """Build the app. ``config`` overrides environment variables by name (for tests)."""
    app = Flask(__name__, instance_relative_config=True)
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
