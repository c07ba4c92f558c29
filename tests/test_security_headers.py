"""Hardened headers on every kind of response; no versions leak; CORS only when configured."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import URL, Connection

from app.main import create_app
from tests.conftest import app_config
from tests.support.server import production_server
from tests.support.tcp import free_port


def _assert_hardened(response: object, *, api: bool = True) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    if api:
        assert csp.startswith("default-src 'none'")
        assert "script-src" not in csp
        assert headers["Cache-Control"] == "no-store"


@pytest.fixture
def crashing_app(app: Flask) -> Flask:
    def explode() -> str:
        raise RuntimeError("boom: SELECT secret FROM nowhere")

    app.add_url_rule("/explode", view_func=explode)
    return app


def test_every_kind_of_response_is_hardened(crashing_app: Flask, write_token: str) -> None:
    client = crashing_app.test_client()
    auth = {"Authorization": f"Bearer {write_token}"}
    created = client.post("/items", json={"title": "t"}, headers=auth)
    responses = {
        200: client.get("/items"),
        201: created,
        204: client.delete(f"/items/{created.get_json()['id']}", headers=auth),
        401: client.post("/items", json={"title": "t"}),
        404: client.get("/missing"),
        405: client.put("/items"),
        422: client.get("/items?limit=0"),
        500: client.get("/explode"),
    }

    for status, response in responses.items():
        assert response.status_code == status
        _assert_hardened(response)


def test_a_500_hides_the_exception(crashing_app: Flask) -> None:
    response = crashing_app.test_client().get("/explode")

    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert "boom" not in response.get_data(as_text=True)
    assert "SELECT" not in response.get_data(as_text=True)


def test_a_503_is_hardened() -> None:
    app = create_app({"APP_ENV": "test", "DATABASE_URL": f"postgresql+psycopg://u@127.0.0.1:{free_port()}/x"})

    response = app.test_client().get("/health/ready")

    assert response.status_code == 503
    _assert_hardened(response)


def test_docs_get_a_csp_relaxed_only_for_their_own_assets(client: FlaskClient) -> None:
    response = client.get("/docs/")

    _assert_hardened(response, api=False)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self' 'unsafe-inline'" in csp
    assert "http" not in csp


def test_cors_is_off_by_default(client: FlaskClient) -> None:
    response = client.get("/items", headers={"Origin": "https://evil.example"})

    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_allows_only_configured_origins(database_url: URL, connection: Connection) -> None:
    app = create_app(app_config(database_url, CORS_ORIGINS="https://app.example.com"))
    app.extensions["database"].bind(connection)
    client = app.test_client()

    allowed = client.options(
        "/items",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    denied = client.get("/items", headers={"Origin": "https://evil.example"})

    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Authorization" in allowed.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Origin" not in denied.headers
    app.extensions["database"].engine.dispose()


@pytest.fixture
def production_url(tmp_path: Path) -> Iterator[str]:
    """The real production server (app/server.py; on SQLite: APP_ENV=test)."""
    with production_server(tmp_path) as server:
        yield server.base_url


def test_the_production_server_reveals_no_versions(production_url: str) -> None:
    with urllib.request.urlopen(f"{production_url}/health", timeout=5) as response:  # noqa: S310 (loopback)
        server_header = response.headers.get("Server", "")
        body = response.read().decode()

    assert not any(character.isdigit() for character in server_header), server_header
    assert "Werkzeug" not in server_header
    assert "Python" not in server_header
    assert "version" not in body.lower()
