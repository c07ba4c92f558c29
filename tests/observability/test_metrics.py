"""GET /metrics in one process: the names, labels and values the app exports."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import URL

from app import __version__
from app.main import create_app
from app.observability.metrics import LATENCY_BUCKETS, Metrics
from tests.observability.support import samples, value
from tests.support.databases import url_string

EXPORTED = {
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    "http_request_duration_seconds_count",
    "http_request_duration_seconds_sum",
    "items_created_total",
    "db_pool_connections_in_use",
    "db_pool_size",
    "items_api_build_info",
    "db_ready",
}


def _scrape(client: FlaskClient) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_metrics_are_served_in_the_prometheus_text_format(client: FlaskClient) -> None:
    client.get("/items")
    response = client.get("/metrics")

    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert {name for name, _ in samples(response.get_data(as_text=True))} >= EXPORTED


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded"])
def test_metrics_are_hidden_from_requests_that_came_through_a_proxy(client: FlaskClient, header: str) -> None:
    response = client.get("/metrics", headers={header: "for=203.0.113.9" if header == "Forwarded" else "203.0.113.9"})

    assert response.status_code == 404
    assert "http_requests_total" not in response.get_data(as_text=True)


def test_requests_are_counted_by_method_route_template_and_status(client: FlaskClient) -> None:
    for _ in range(3):
        client.get("/items/987654")
    client.get("/items")
    client.get("/items")

    scrape = _scrape(client)
    assert value(scrape, "http_requests_total", method="GET", route="/items/<item_id:item_id>", status="404") == 3
    assert value(scrape, "http_requests_total", method="GET", route="/items", status="200") == 2
    assert value(scrape, "http_request_duration_seconds_count", method="GET", route="/items/<item_id:item_id>") == 3


def test_unknown_paths_and_methods_collapse_into_one_label_value(client: FlaskClient) -> None:
    for path in ("/wp-login.php", "/a/b/c", "/items/not-a-number", "/.env"):
        client.get(path)
    client.open("/items", method="BREW")

    scrape = _scrape(client)
    assert value(scrape, "http_requests_total", method="GET", route="<unmatched>", status="404") == 4
    assert value(scrape, "http_requests_total", method="OTHER", route="<unmatched>", status="405") == 1
    routes = {dict(labels).get("route") for _, labels in samples(scrape)} - {None}
    assert routes == {"<unmatched>"}


def test_the_latency_histogram_resolves_1_to_500_ms() -> None:
    fine = [bound for bound in LATENCY_BUCKETS if 0.001 <= bound <= 0.5]

    assert fine[0] == 0.001
    assert fine[-1] == 0.5
    assert len(fine) >= 10
    assert all(high / low <= 2.5 for low, high in pairwise(fine))


def test_request_latency_lands_in_the_histogram(client: FlaskClient) -> None:
    client.get("/health")

    scrape = _scrape(client)
    labels = {"method": "GET", "route": "/health"}
    assert value(scrape, "http_request_duration_seconds_bucket", le="+Inf", **labels) == 1
    assert value(scrape, "http_request_duration_seconds_bucket", le="5.0", **labels) == 1
    assert 0 < value(scrape, "http_request_duration_seconds_sum", **labels) < 5


def test_items_created_counts_only_items_that_were_created(client: FlaskClient) -> None:
    client.post("/items", json={"title": "one"})
    client.post("/items", json={"title": "two"})
    client.post("/items", json={"title": ""})
    client.post("/items", data="{", content_type="application/json")

    assert value(_scrape(client), "items_created_total") == 2


def test_build_info_reports_the_version_and_the_git_commit(tmp_path: Path) -> None:
    app = create_app({"APP_ENV": "test", "DATABASE_URL": f"sqlite:///{tmp_path}/i.db", "GIT_SHA": "0123abcDEF"})

    scrape = _scrape(app.test_client())
    app.extensions["database"].engine.dispose()  # Python 3.13 warns about an unclosed SQLite connection

    assert value(scrape, "items_api_build_info", version=__version__, git_sha="0123abcdef") == 1


def test_db_ready_is_1_when_the_database_answers(client: FlaskClient) -> None:
    assert value(_scrape(client), "db_ready") == 1


def test_db_ready_is_0_when_the_database_does_not_answer(tmp_path: Path) -> None:
    app = create_app({"APP_ENV": "test", "DATABASE_URL": f"sqlite:///{tmp_path}/missing-dir/items.db"})

    response = app.test_client().get("/metrics")

    assert response.status_code == 200
    assert value(response.get_data(as_text=True), "db_ready") == 0


def test_pool_gauges_follow_connections_in_use(live_app: Flask, live_client: FlaskClient) -> None:
    engine = live_app.extensions["database"].engine
    metrics: Metrics = live_app.extensions["metrics"]

    def in_use() -> float | None:
        return metrics.registry.get_sample_value("db_pool_connections_in_use")

    with engine.connect(), engine.connect():
        assert in_use() == 2
        assert metrics.registry.get_sample_value("db_pool_size") == engine.pool.size()
    assert in_use() == 0
    assert live_client.post("/items", json={"title": "t"}).status_code == 201
    assert in_use() == 0


@pytest.mark.postgresql_only
@pytest.mark.parametrize("pool_size", [3, 7])
def test_pool_size_gauge_reports_the_configured_size(fresh_database_url: URL, pool_size: int) -> None:
    app = create_app({"APP_ENV": "test", "DATABASE_URL": url_string(fresh_database_url), "DB_POOL_SIZE": pool_size})
    metrics: Metrics = app.extensions["metrics"]
    engine = app.extensions["database"].engine

    with engine.connect():
        pass
    engine.dispose()

    assert metrics.registry.get_sample_value("db_pool_size") == pool_size


def test_each_app_counts_from_zero(tmp_path: Path) -> None:
    first = create_app({"APP_ENV": "test", "DATABASE_URL": f"sqlite:///{tmp_path}/i.db"})
    first.test_client().get("/health")
    second = create_app({"APP_ENV": "test", "DATABASE_URL": f"sqlite:///{tmp_path}/i.db"})

    scrape = _scrape(second.test_client())
    for app in (first, second):
        app.extensions["database"].engine.dispose()  # Python 3.13 warns about unclosed SQLite connections

    assert value(scrape, "http_requests_total", method="GET", route="/health", status="200") == 0
