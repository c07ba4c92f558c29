"""Pooled connections the server closed (a restart, an idle timeout): no request fails.

Reads skip the pool's ping and run once more on a pinged connection when theirs was dead;
writes are pinged at checkout. Either way the client gets its answer, not a 503.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import URL, create_engine, text

from app.main import create_app
from app.migrate import upgrade
from tests.conftest import app_config
from tests.support.auth import bearer, issue_token

pytestmark = pytest.mark.postgresql_only


@pytest.fixture(params=[0, 5], ids=["token looked up", "token cached"])
def app(fresh_database_url: URL, request: pytest.FixtureRequest) -> Iterator[Flask]:
    # Looked up: the token's SELECT is the request's first statement; cached: the query or write is.
    settings = app_config(fresh_database_url, READS_REQUIRE_AUTH=True, TOKEN_CACHE_SECONDS=request.param)
    app = create_app(settings)
    upgrade(app.extensions["database"].engine)
    yield app
    app.extensions["database"].engine.dispose()


def _close_the_pools_connections(url: URL) -> int:
    """What a database restart does to the pool: every connection of the app's closed by the server."""
    admin = create_engine(url.set(database="postgres"))
    try:
        with admin.connect() as connection:
            terminated = connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                {"name": url.database},
            )
            return len(terminated.all())
    finally:
        admin.dispose()


@pytest.mark.parametrize("path", ["/items", "/items/{id}", "/health/ready"])
def test_a_read_on_a_connection_the_server_closed_is_answered(app: Flask, fresh_database_url: URL, path: str) -> None:
    client = app.test_client()
    reader = bearer(issue_token(app, "reader", "read"))  # reads need a token here: its lookup is a read too
    writer = bearer(issue_token(app, "writer", "write"))
    created = client.post("/items", json={"title": "kept"}, headers=writer).get_json()
    assert client.get("/items", headers=reader).status_code == 200  # the pool now holds a used connection

    assert _close_the_pools_connections(fresh_database_url) >= 1
    response = client.get(path.format(id=created["id"]), headers=reader)

    assert response.status_code == 200, response.get_data(as_text=True)
    if path == "/items/{id}":
        assert response.get_json() == created


def test_a_write_on_a_connection_the_server_closed_is_answered(app: Flask, fresh_database_url: URL) -> None:
    client = app.test_client()
    writer = bearer(issue_token(app, "writer", "write"))
    assert client.post("/items", json={"title": "first"}, headers=writer).status_code == 201

    assert _close_the_pools_connections(fresh_database_url) >= 1
    response = client.post("/items", json={"title": "second"}, headers=writer)

    assert response.status_code == 201, response.get_data(as_text=True)
    assert [item["title"] for item in client.get("/items", headers=writer).get_json()["items"]] == ["second", "first"]


def test_a_read_whose_retry_also_fails_is_a_503(app: Flask, fresh_database_url: URL) -> None:
    """One retry, not a loop: with the database refusing new connections the read gives up at once."""
    client = app.test_client()
    reader = bearer(issue_token(app, "reader", "read"))
    assert client.get("/items", headers=reader).status_code == 200
    admin = create_engine(fresh_database_url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    database = fresh_database_url.database
    try:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false'))
        _close_the_pools_connections(fresh_database_url)

        response = client.get("/items", headers=reader)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true'))
        admin.dispose()

    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
