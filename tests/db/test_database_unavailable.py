"""Database down, hanging or failing: 503 problem+json with Retry-After, and recovery by itself."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from flask import Flask, Response
from flask.testing import FlaskClient
from sqlalchemy import URL, create_engine, text

from app.auth import new_token
from app.db import get_session
from app.main import create_app
from app.migrate import upgrade
from tests.conftest import app_config
from tests.support.auth import bearer, issue_token
from tests.support.databases import url_string
from tests.support.proxy import LinkProxy
from tests.support.tcp import BlackHole, free_port

REQUESTS = [
    ("GET", "/items", None),
    ("GET", "/items/1", None),
    ("POST", "/items", {"title": "t"}),
    ("PATCH", "/items/1", {"title": "t"}),
    ("DELETE", "/items/1", None),
    ("GET", "/health/ready", None),
]


# Well-formed, so checking it needs the database (an unknown token would otherwise be a 401).
SOME_TOKEN = new_token().token


def _assert_unavailable(client: FlaskClient, method: str, path: str, body: object) -> None:
    response = client.open(path, method=method, json=body, headers=bearer(SOME_TOKEN))
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"].isdigit()
    assert "psycopg" not in response.get_data(as_text=True)


def _app(database_url: str, **extra: object) -> Flask:
    return create_app({"APP_ENV": "test", "DATABASE_URL": database_url, "DB_CONNECT_TIMEOUT": 1, **extra})


@pytest.mark.parametrize(("method", "path", "body"), REQUESTS)
def test_refused_postgresql_connection_gives_503(method: str, path: str, body: object) -> None:
    app = _app(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/items")

    _assert_unavailable(app.test_client(), method, path, body)


@pytest.mark.parametrize(("method", "path", "body"), REQUESTS)
def test_unopenable_sqlite_database_gives_503(tmp_path: Path, method: str, path: str, body: object) -> None:
    app = _app(f"sqlite:///{tmp_path}/missing-dir/items.db")

    _assert_unavailable(app.test_client(), method, path, body)


@pytest.mark.timeout(30)
def test_a_database_that_never_answers_gives_503_instead_of_a_hang() -> None:
    with BlackHole() as hole:
        app = _app(f"postgresql+psycopg://postgres@127.0.0.1:{hole.port}/items")
        results: list[int] = []
        worker = threading.Thread(target=lambda: results.append(app.test_client().get("/health/ready").status_code))
        worker.start()
        worker.join(timeout=20)

    assert results == [503]


def test_liveness_stays_ok_while_the_database_is_down() -> None:
    app = _app(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/items")

    assert app.test_client().get("/health").status_code == 200


@pytest.mark.postgresql_only
def test_the_service_recovers_by_itself_when_the_database_link_comes_back(fresh_database_url: URL) -> None:
    migrator = create_engine(fresh_database_url)
    upgrade(migrator)
    migrator.dispose()
    host, port = fresh_database_url.host or "127.0.0.1", fresh_database_url.port or 5432
    proxy = LinkProxy(port, target_host=host)
    proxied = url_string(fresh_database_url.set(host="127.0.0.1", port=proxy.port))
    app = _app(proxied)
    client = app.test_client()
    try:
        proxy.start()
        token = issue_token(app, "writer", "write")
        created = client.post("/items", json={"title": "before the outage"}, headers=bearer(token)).get_json()

        proxy.cut()
        _assert_unavailable(client, "GET", f"/items/{created['id']}", None)

        proxy.start()
        assert client.get(f"/items/{created['id']}", headers=bearer(token)).get_json() == created
        assert client.get("/health/ready").status_code == 200
    finally:
        proxy.cut()
        app.extensions["database"].engine.dispose()


@pytest.mark.postgresql_only
def test_a_statement_over_the_timeout_gives_503(fresh_database_url: URL) -> None:
    locker = create_engine(fresh_database_url)
    upgrade(locker)
    app = _app(url_string(fresh_database_url), DB_STATEMENT_TIMEOUT_MS=200)
    try:
        with locker.begin() as connection:
            connection.execute(text("LOCK TABLE items IN ACCESS EXCLUSIVE MODE"))
            _assert_unavailable(app.test_client(), "GET", "/items", None)
        assert app.test_client().get("/items").status_code == 200
    finally:
        app.extensions["database"].engine.dispose()
        locker.dispose()


def test_app_config_helper_is_what_tests_use() -> None:
    assert app_config(URL.create("sqlite"))["APP_ENV"] == "test"


@pytest.mark.postgresql_only
def test_a_connection_lost_after_the_response_is_made_does_not_turn_it_into_a_500(
    live_app: Flask, fresh_database_url: URL
) -> None:
    admin = create_engine(fresh_database_url)

    @live_app.after_request
    def lose_the_connection(response: Response) -> Response:
        # Kill this request's server connection: the rollback at teardown then fails.
        pid = get_session().scalar(text("SELECT pg_backend_pid()"))
        with admin.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        return response

    client = live_app.test_client()
    try:
        assert client.get("/items").status_code == 200
        assert client.get("/items").status_code == 200, "the broken connection was not reused"
    finally:
        admin.dispose()
