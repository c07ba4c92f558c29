"""Liveness and readiness probes."""

from __future__ import annotations

import logging

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from sqlalchemy import URL, Connection

from app.main import create_app
from tests.conftest import app_config


def test_health_reports_ok_and_the_environment(client: FlaskClient) -> None:
    response = client.get("/health")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {"status": "ok", "environment": "test"}


def test_health_reports_the_configured_environment(instance_path: object) -> None:
    app = create_app({"APP_ENV": "local", "DATABASE_URL": "sqlite:////nonexistent-dir/never.db"})

    assert app.test_client().get("/health").get_json() == {"status": "ok", "environment": "local"}


def test_health_does_not_touch_the_database() -> None:
    # The URL points at a directory that does not exist: any query would fail.
    app = create_app({"APP_ENV": "test", "DATABASE_URL": "sqlite:////nonexistent-dir/never.db"})

    assert app.test_client().get("/health").status_code == 200


def test_readiness_reports_the_database_ok(client: FlaskClient) -> None:
    response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


# --- the liveness probe's own path (app/api/health.py LivenessProbe) ----------------


def _answer(app: Flask, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    response = app.test_client().get(path, headers=headers)
    kept = {name.lower(): value for name, value in response.headers.items() if name.lower() != "x-request-id"}
    return response.status_code, kept, response.get_data()


def _counting_flask_requests(app: Flask) -> list[str]:
    seen: list[str] = []
    app.before_request_funcs.setdefault(None, []).insert(0, lambda: seen.append(request.full_path) and None)
    return seen


@pytest.mark.parametrize("cors", [(), ("https://app.example.com",)], ids=["cors-off", "cors-on"])
def test_a_plain_get_health_skips_flask_and_answers_the_views_exact_bytes_and_headers(
    database_url: URL, connection: Connection, cors: tuple[str, ...]
) -> None:
    app = create_app(app_config(database_url, CORS_ORIGINS=",".join(cors)))
    app.extensions["database"].bind(connection)
    through_flask = _counting_flask_requests(app)

    probe = _answer(app, "/health")
    view = _answer(app, "/health?through=flask")  # a query string goes on to the view

    # With CORS on, flask-cors adds its headers to every answer: the probe stays out.
    assert through_flask == (["/health?", "/health?through=flask"] if cors else ["/health?through=flask"])
    assert probe == view
    assert probe[1]["content-type"] == "application/json"


def test_the_probe_writes_the_access_line_and_counts_the_request(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="app.access")

    response = app.test_client().get("/health", headers={"User-Agent": "kubelet"})

    [line] = [r for r in caplog.records if r.name == "app.access"]
    assert (line.method, line.route, line.status, line.user_agent) == ("GET", "/health", 200, "kubelet")
    assert line.request_id == response.headers["X-Request-ID"]
    assert line.client == "127.0.0.1"
    scrape = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'http_requests_total{method="GET",route="/health",status="200"} 1.0' in scrape


@pytest.mark.parametrize(
    ("method", "headers"),
    [("HEAD", {}), ("GET", {"Origin": "https://app.example.com"}), ("GET", {"Authorization": "Bearer x.y"})],
    ids=["head", "cors-origin", "credentials"],
)
def test_other_liveness_requests_go_on_to_flask(app: Flask, method: str, headers: dict[str, str]) -> None:
    through_flask = _counting_flask_requests(app)

    app.test_client().open("/health", method=method, headers=headers)

    assert through_flask == ["/health?"]
