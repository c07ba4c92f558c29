"""Once per request, in one pass: start time, request id, security headers, metrics, access line.

A WSGI layer notes when the request arrived and adds the fixed response headers to the
header list it passes on, Flask's or the liveness probe's (app/api/health.py); werkzeug's
``Headers`` checks and scans for every header set, several times the cost of the rest
of a response's headers. One
``after_request`` hook picks the header set (the docs page has its own) and records the
request (metrics and the access line), each computed once. There is no cookie session to
open or save: the API authenticates with bearer tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from flask import Flask, Request, Response, request
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.local import LocalProxy

from . import security_headers
from .config import Settings
from .request_id import HEADER, request_id_for
from .trusted_proxy import TrustedProxyFix

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .observability.access import AccessRecorder

STARTED = "items_api.started"
RESPONSE_HEADERS = "items_api.response_headers"

Recorder = Callable[[Request, Response], None]


@dataclass(frozen=True)
class FixedHeaders:
    headers: tuple[tuple[str, str], ...]
    names: frozenset[str]  # lower case, the request id's included: replaced, not duplicated

    @classmethod
    def of(cls, headers: tuple[tuple[str, str], ...]) -> FixedHeaders:
        return cls(headers, frozenset({HEADER.lower(), *(name.lower() for name, _ in headers)}))


API = FixedHeaders.of(security_headers.API_HEADERS)
DOCS = FixedHeaders.of(security_headers.DOCS_HEADERS)


class OnePass:
    """WSGI middleware: the start time in, the fixed headers and the request id out."""

    def __init__(self, wsgi_app: WSGIApplication) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ[STARTED] = time.perf_counter()

        def start(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> object:
            fixed: FixedHeaders = environ.get(RESPONSE_HEADERS, API)
            names = fixed.names
            for name, _ in headers:  # a plain loop: no generator for any() on every response
                if name.lower() in names:
                    headers = [(name, value) for name, value in headers if name.lower() not in names]
                    break
            headers.extend(fixed.headers)
            headers.append((HEADER, request_id_for(environ)))
            return start_response(status, headers, exc_info)  # type: ignore[arg-type]

        return self.wsgi_app(environ, start)  # type: ignore[arg-type]


class AfterRequest:
    """The one ``after_request`` hook: runs for every response, error responses included."""

    def __init__(self, recorder: Recorder | None) -> None:
        self.recorder = recorder

    def __call__(self, response: Response) -> Response:
        # One context lookup, not one per attribute: this runs on every request.
        req = cast("LocalProxy[Request]", request)._get_current_object()
        if req.blueprint == security_headers.DOCS_BLUEPRINT:
            req.environ[RESPONSE_HEADERS] = DOCS
        if self.recorder is not None:
            self.recorder(req, response)
        return response


class NoCookieSession(SessionInterface):
    """Flask's null session: nothing signed, parsed or saved per request."""

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        return None  # Flask then uses its NullSession, and never calls save_session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        return None


def init_app(app: Flask, settings: Settings, recorder: AccessRecorder | None) -> None:
    """The WSGI layers around Flask, outermost first: OnePass, proxy trust, the liveness probe (CORS off)."""
    from .api.health import LivenessProbe

    app.session_interface = NoCookieSession()
    wsgi_app: WSGIApplication = app.wsgi_app
    if not settings.cors_origins:  # with CORS on, flask-cors adds its headers to every answer
        wsgi_app = LivenessProbe(wsgi_app, settings, recorder)
    if settings.trusted_proxy_hops:
        # Believe exactly as many X-Forwarded-For/-Proto entries as there are proxies of
        # ours in front (Caddy: 1), and only from them (FORWARDED_ALLOW_IPS): a client
        # cannot forge its address past them, nor by reaching the port directly.
        wsgi_app = TrustedProxyFix(wsgi_app, settings.trusted_proxy_hops, settings.forwarded_allow_networks)
    app.wsgi_app = OnePass(wsgi_app)  # type: ignore[method-assign]
    app.after_request(AfterRequest(recorder))
