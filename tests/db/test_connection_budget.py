"""The connection budget: replicas x workers x (pool + overflow) against max_connections minus a reserve."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from app.config import ConfigError, load_settings
from app.main import create_app

THREE_REPLICAS = {
    "EXPECTED_REPLICAS": "3",
    "WEB_CONCURRENCY": "2",
    "DB_POOL_SIZE": "5",
    "DB_MAX_OVERFLOW": "5",
}


def test_a_budget_over_max_connections_minus_the_reserve_stops_start_up(tmp_path: Path) -> None:
    environ = {**THREE_REPLICAS, "DB_MAX_CONNECTIONS": "65", "DB_RESERVED_CONNECTIONS": "10"}
    with pytest.raises(ConfigError, match=r"connection budget exceeded: .* = 60 > .* = 55"):
        load_settings(instance_path=tmp_path, environ=environ)


def test_a_budget_that_fits_is_computed_from_every_factor(tmp_path: Path) -> None:
    environ = {**THREE_REPLICAS, "DB_MAX_CONNECTIONS": "70", "DB_RESERVED_CONNECTIONS": "10"}
    settings = load_settings(instance_path=tmp_path, environ=environ)
    assert settings.connection_budget == 3 * 2 * (5 + 5)


def test_an_unknown_max_connections_is_not_checked(tmp_path: Path) -> None:
    settings = load_settings(instance_path=tmp_path, environ={**THREE_REPLICAS, "EXPECTED_REPLICAS": "500"})
    assert settings.connection_budget == 500 * 2 * 10


def test_the_app_logs_its_budget_at_start_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="app.engine")
    config = {
        "APP_ENV": "test",
        "DATABASE_URL": "postgresql+psycopg://items@db.example:5432/items",
        **THREE_REPLICAS,
        "DB_MAX_CONNECTIONS": "100",
    }
    app = create_app(config)
    app.extensions["database"].engine.dispose()
    lines = [r.getMessage() for r in caplog.records if r.name == "app.engine"]
    assert lines == [
        "database connection budget: 3 replicas x 2 workers x (pool 5 + overflow 5) = 60 connections; "
        "limit 100 - 10 reserved = 90"
    ]
