"""Per request: one access log line and the HTTP metrics, labelled by route template.

Never the raw path (unbounded label values), never headers other than the user
agent, never a body: tokens and personal data stay out of logs and metrics.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from flask import Request, Response

from ..auth import current_principal
from ..middleware import STARTED
from ..request_id import request_id_for
from .metrics import Metrics

UNMATCHED_ROUTE = "<unmatched>"
OTHER_METHOD = "OTHER"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
USER_AGENT_LIMIT = 256

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

log = logging.getLogger("app.access")


def route_label(req: Request) -> str:
    """The matched route's template; every unmatched path (404, 405) shares one value."""
    rule = req.url_rule
    return rule.rule if rule is not None else UNMATCHED_ROUTE


class AccessRecorder:
    """Metrics and the access line of one response (called by app.middleware's one hook)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def __call__(self, req: Request, response: Response) -> None:
        # Set by the authentication layer: the token's name, never the token.
        principal = current_principal()
        self.record(
            req.environ, req.method, route_label(req), response.status_code, principal.name if principal else None
        )

    def record(
        self, environ: WSGIEnvironment, method: str, route: str, status: int, principal: str | None = None
    ) -> None:
        """The metrics and the access line of a response, from the WSGI environ (Flask's or not)."""
        started: float | None = environ.get(STARTED)
        seconds = time.perf_counter() - started if started is not None else 0.0
        self.metrics.observe_request(method if method in KNOWN_METHODS else OTHER_METHOD, route, status, seconds)
        if log.isEnabledFor(logging.INFO):
            fields: dict[str, object] = {
                "request_id": request_id_for(environ),
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "client": environ.get("REMOTE_ADDR"),  # what werkzeug's Request.remote_addr reads
                # What req.headers.get("User-Agent", "") returns, in one lookup.
                "user_agent": environ.get("HTTP_USER_AGENT", "")[:USER_AGENT_LIMIT],
            }
            if principal is not None:
                fields["principal"] = principal
            # log.info("request", extra=fields) without its walk up the stack to find the
            # caller (Logger.findCaller), which is always this method: the same record,
            # through the same filters and handlers. The fields are added as makeRecord's
            # extra would add them, without its per-key check that none overwrites a record
            # attribute: their names are fixed, and a test pins the record's own attributes.
            record = log.makeRecord(log.name, logging.INFO, __file__, _LINE, "request", (), None, _FUNC)
            record.__dict__.update(fields)
            log.handle(record)


# The access line's source, as findCaller would name it (the line: where the method starts).
_LINE = AccessRecorder.record.__code__.co_firstlineno
_FUNC = AccessRecorder.record.__name__
