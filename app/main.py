"""The application factory: ``flask --app app.main:create_app``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from flask import Flask

from . import (
    auth,
    db,
    errors,
    idempotency,
    idempotency_prune,
    migrate,
    observability,
    openapi,
    ratelimit,
    request_id,
    request_limits,
    security_headers,
    tokens_cli,
)
from .api import health, items
from .config import load_settings
from .json_provider import OrjsonProvider


def create_app(config: Mapping[str, object] | None = None) -> Flask:
    """Build the app. ``config`` overrides environment variables by name (for tests)."""
    app = Flask(__name__, instance_relative_config=True)
    settings = load_settings(config, instance_path=app.instance_path)
    app.config.from_mapping(settings.flask_config())
    app.json = OrjsonProvider(app)
    if settings.database_url.get_backend_name() == "sqlite":
        # The embedded default lives under instance/, which may not exist yet.
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    db.init_app(app, settings)
    observability.init_app(app, settings)
    db.log_connection_budget(settings)
    request_id.init_app(app)
    request_limits.init_app(app)
    security_headers.init_app(app, settings)
    errors.register_error_handlers(app)
    auth.init_app(app)  # before the limiter: limits key on the authenticated token
    app.register_blueprint(health.bp)
    app.register_blueprint(items.bp)
    openapi.init_app(app)
    ratelimit.init_app(app, settings)
    migrate.init_app(app)
    tokens_cli.init_app(app)
    idempotency.init_app(app)
    idempotency_prune.init_app(app, settings)
    return app
