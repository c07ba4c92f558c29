"""Per request: one access log line and the HTTP metrics, labelled by route template.

Never the raw path (unbounded label values), never headers other than the user
agent, never a body: tokens and personal data stay out of logs and metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

from flask import Flask, Request, Response, request
from werkzeug.local import LocalProxy

from ..auth import current_principal
from ..request_id import current_request_id
from .metrics import Metrics

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

STARTED = "items_api.started"
UNMATCHED_ROUTE = "<unmatched>"
OTHER_METHOD = "OTHER"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
USER_AGENT_LIMIT = 256

log = logging.getLogger("app.access")


class StartClock:
    """WSGI middleware: notes when the request arrived, before any Flask work."""

    def __init__(self, wsgi_app: WSGIApplication) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ[STARTED] = time.perf_counter()
        return self.wsgi_app(environ, start_response)


def route_label(req: Request) -> str:
    """The matched route's template; every unmatched path (404, 405) shares one value."""
    rule = req.url_rule
    return rule.rule if rule is not None else UNMATCHED_ROUTE


class AccessRecorder:
    """The ``after_request`` hook: runs for every response, error responses included."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def __call__(self, response: Response) -> Response:
        # One context lookup, not one per attribute: this runs on every request.
        req = cast("LocalProxy[Request]", request)._get_current_object()
        started: float | None = req.environ.get(STARTED)
        seconds = time.perf_counter() - started if started is not None else 0.0
        route = route_label(req)
        method = req.method
        self.metrics.observe_request(
            method if method in KNOWN_METHODS else OTHER_METHOD, route, response.status_code, seconds
        )
        if log.isEnabledFor(logging.INFO):
            fields: dict[str, object] = {
                "request_id": current_request_id(),
                "method": method,
                "route": route,
                "status": response.status_code,
                "duration_ms": round(seconds * 1000, 2),
                "client": req.remote_addr,
                "user_agent": req.headers.get("User-Agent", "")[:USER_AGENT_LIMIT],
            }
            # Set by the authentication layer: the token's name, never the token.
            principal = current_principal()
            if principal is not None:
                fields["principal"] = principal.name
            log.info("request", extra=fields)
        return response


def init_app(app: Flask, metrics: Metrics) -> None:
    app.wsgi_app = StartClock(app.wsgi_app)  # type: ignore[method-assign]
    app.after_request(AccessRecorder(metrics))
