"""Hardened response headers on every response, and CORS only for configured origins."""

from __future__ import annotations

from flask import Flask, Response, request
from flask_cors import CORS

from .config import Settings

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI's page has one inline script and inline styles; nothing is loaded from elsewhere.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
DOCS_BLUEPRINT = "swagger_ui"


def _harden(response: Response) -> Response:
    headers = response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Frame-Options"] = "DENY"
    if request.blueprint == DOCS_BLUEPRINT:
        headers["Content-Security-Policy"] = DOCS_CSP
    else:
        headers["Content-Security-Policy"] = API_CSP
        headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask, settings: Settings) -> None:
    app.after_request(_harden)
    if settings.cors_origins:
        CORS(
            app,
            origins=list(settings.cors_origins),
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["Location", "Retry-After", "X-Request-ID"],
            max_age=600,
        )
