"""Liveness and readiness probes."""

from __future__ import annotations

from flask.testing import FlaskClient

from app.main import create_app


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
