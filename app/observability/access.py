"""Per request: one access log line and the HTTP metrics, labelled by route template.

Never the raw path (unbounded label values), never headers other than the user
agent, never a body: tokens and personal data stay out of logs and metrics.
"""

from __future__ import annotations

import logging
import time

from flask import Request, Response

from ..auth import current_principal
from ..middleware import STARTED
from ..request_id import request_id_for
from .metrics import Metrics

UNMATCHED_ROUTE = "<unmatched>"
OTHER_METHOD = "OTHER"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
USER_AGENT_LIMIT = 256

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
        started: float | None = req.environ.get(STARTED)
        seconds = time.perf_counter() - started if started is not None else 0.0
        route = route_label(req)
        method = req.method
        self.metrics.observe_request(
            method if method in KNOWN_METHODS else OTHER_METHOD, route, response.status_code, seconds
        )
        if log.isEnabledFor(logging.INFO):
            fields: dict[str, object] = {
                "request_id": request_id_for(req.environ),
                "method": method,
                "route": route,
                "status": response.status_code,
                "duration_ms": round(seconds * 1000, 2),
                "client": req.remote_addr,
                # What req.headers.get("User-Agent", "") returns, in one lookup.
                "user_agent": req.environ.get("HTTP_USER_AGENT", "")[:USER_AGENT_LIMIT],
            }
            # Set by the authentication layer: the token's name, never the token.
            principal = current_principal()
            if principal is not None:
                fields["principal"] = principal.name
            # log.info("request", extra=fields) without its walk up the stack to find the
            # caller (Logger.findCaller), which is always this method: the same record,
            # through the same filters and handlers. The fields are added as makeRecord's
            # extra would add them, without its per-key check that none overwrites a record
            # attribute: their names are fixed, and a test pins the record's own attributes.
            record = log.makeRecord(log.name, logging.INFO, __file__, _LINE, "request", (), None, _FUNC)
            record.__dict__.update(fields)
            log.handle(record)


# The access line's source, as findCaller would name it (the line: where the method starts).
_LINE = AccessRecorder.__call__.__code__.co_firstlineno
_FUNC = AccessRecorder.__call__.__name__
