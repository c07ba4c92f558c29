"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, current_app
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from ..config import Settings
from ..db import Query, read
from ..errors import ApiError
from ..lifecycle import is_draining
from ..openapi import operation
from ..schemas import HealthOut, ReadinessOut

bp = Blueprint("health", __name__)
PING = Query(text("SELECT 1"))


@bp.get("/health")
@operation("Liveness: the process serves requests", responses={200: HealthOut}, tags=("health",))
def health() -> ResponseReturnValue:
    """Never touches the database, so a database outage does not restart the API."""
    settings: Settings = current_app.config["SETTINGS"]
    return {"status": "ok", "environment": settings.app_env}


@bp.get("/health/ready")
@operation("Readiness: the database answers", responses={200: ReadinessOut}, tags=("health",))
def ready() -> ResponseReturnValue:
    """503 while the server drains before shutting down, or when the database does not answer."""
    if is_draining():
        raise ApiError(503, "The server is shutting down.", headers={"Retry-After": "1"})
    read(lambda reader: reader.first(PING, {}))
    return {"status": "ok", "database": "ok"}
