"""Liveness and readiness probes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import orjson
from flask import Blueprint, current_app
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from ..config import Settings
from ..db import Query, read
from ..errors import ApiError
from ..lifecycle import is_draining
from ..openapi import operation
from ..schemas import HealthOut, ReadinessOut

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

bp = Blueprint("health", __name__)
PING = Query(text("SELECT 1"))
LIVENESS_PATH = "/health"


def liveness(settings: Settings) -> dict[str, str]:
    return {"status": "ok", "environment": settings.app_env}


@bp.get(LIVENESS_PATH)
@operation("Liveness: the process serves requests", responses={200: HealthOut}, tags=("health",))
def health() -> ResponseReturnValue:
    """Never touches the database, so a database outage does not restart the API."""
    settings: Settings = current_app.config["SETTINGS"]
    return liveness(settings)


class Recorder(Protocol):
    def record(self, environ: WSGIEnvironment, method: str, route: str, status: int) -> None: ...


class LivenessProbe:
    """WSGI layer: a plain ``GET /health`` answered before Flask, with the view's exact bytes.

    Orchestrators and proxies ask every few seconds, on every worker. The answer never
    changes, so Flask's request machinery (context, routing, hooks, response object) is
    skipped; what every response gets is kept: the layers around this one add the
    security headers and the request id, and the recorder writes its access line and
    metrics under the same route label. Anything else (another method, a query string,
    an ``Origin``, credentials) goes on to Flask's view, and with CORS on (flask-cors adds
    headers to every answer) the probe is not installed. Tests compare the two.
    """

    def __init__(self, app: WSGIApplication, settings: Settings, recorder: Recorder | None) -> None:
        self.app = app
        self.body = orjson.dumps(liveness(settings))  # as app/json_provider.py writes the view's dict
        self.headers = (("Content-Type", "application/json"), ("Content-Length", str(len(self.body))))
        self.recorder = recorder

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if (
            environ.get("PATH_INFO") != LIVENESS_PATH
            or environ.get("REQUEST_METHOD") != "GET"
            or environ.get("QUERY_STRING")
            or "HTTP_ORIGIN" in environ
            or "HTTP_AUTHORIZATION" in environ
        ):
            return self.app(environ, start_response)
        start_response("200 OK", list(self.headers))
        if self.recorder is not None:
            self.recorder.record(environ, "GET", LIVENESS_PATH, 200)
        return [self.body]


@bp.get("/health/ready")
@operation("Readiness: the database answers", responses={200: ReadinessOut}, tags=("health",))
def ready() -> ResponseReturnValue:
    """503 while the server drains before shutting down, or when the database does not answer."""
    if is_draining():
        raise ApiError(503, "The server is shutting down.", headers={"Retry-After": "1"})
    read(lambda reader: reader.first(PING, {}))
    return {"status": "ok", "database": "ok"}
