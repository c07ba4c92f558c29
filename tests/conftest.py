"""Fixtures: every database test runs on PostgreSQL and on the embedded SQLite.

PostgreSQL comes from TEST_DATABASE_URL (then it is required), else from
127.0.0.1:5432 if it answers; each run creates its own throwaway databases.
Each test is isolated by an outer transaction that even a ``commit()`` in the
code under test cannot escape (SQLAlchemy's "join_transaction_mode" recipe).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import URL, Connection, Engine

from app.config import load_settings
from app.db import Database
from app.engine import build_engine
from app.main import create_app
from app.migrate import upgrade
from tests.support.auth import issue_token
from tests.support.databases import (
    DEFAULT_POSTGRES_URL,
    Backend,
    PostgresBackend,
    SqliteBackend,
    reachable_postgres,
    url_string,
)

_postgres_key = pytest.StashKey[PostgresBackend | None]()
_skip_reason_key = pytest.StashKey[str | None]()


def pytest_configure(config: pytest.Config) -> None:
    explicit = os.environ.get("TEST_DATABASE_URL")
    url, failure = reachable_postgres(explicit or DEFAULT_POSTGRES_URL)
    if failure and explicit:
        raise pytest.UsageError(f"TEST_DATABASE_URL is set but PostgreSQL does not answer: {failure}")
    config.stash[_postgres_key] = None if failure else PostgresBackend(url)
    config.stash[_skip_reason_key] = failure


def pytest_report_header(config: pytest.Config) -> list[str]:
    postgres = config.stash[_postgres_key]
    if postgres is None:
        return [
            "database backends: sqlite ONLY",
            f"  PostgreSQL did not answer at {DEFAULT_POSTGRES_URL} ({config.stash[_skip_reason_key]});",
            "  set TEST_DATABASE_URL or start PostgreSQL to run the suite against it too.",
        ]
    return [f"database backends: postgresql ({postgres.describe()}), sqlite"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if config.stash[_postgres_key] is None:
        terminalreporter.write_line("WARNING: ran on SQLite only; PostgreSQL was not reachable.", yellow=True)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" not in metafunc.fixturenames:
        return
    names = ["postgresql", "sqlite"]
    if metafunc.definition.get_closest_marker("postgresql_only"):
        names = ["postgresql"]
    if metafunc.config.stash[_postgres_key] is None:
        names.remove("postgresql")
    metafunc.parametrize("backend_name", names, scope="session")


@pytest.fixture(scope="session")
def backend(
    backend_name: str, pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    chosen: Backend | None
    if backend_name == "postgresql":
        chosen = pytestconfig.stash[_postgres_key]
        assert chosen is not None
        yield chosen
        chosen.close()
    else:
        yield SqliteBackend(tmp_path_factory.mktemp("sqlite"))


def app_config(url: URL, **extra: object) -> dict[str, object]:
    return {"APP_ENV": "test", "DATABASE_URL": url_string(url), **extra}


@pytest.fixture(scope="session")
def database_url(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[URL]:
    """A database migrated to head, shared by the session's transactional tests."""
    url = backend.create_database()
    engine = build_engine(load_settings(app_config(url), instance_path=tmp_path_factory.mktemp("instance")))
    upgrade(engine)
    engine.dispose()
    yield url
    backend.drop_database(url)


@pytest.fixture(scope="session")
def engine(database_url: URL, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = build_engine(load_settings(app_config(database_url), instance_path=tmp_path_factory.mktemp("instance")))
    yield engine
    engine.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that is rolled back after the test."""
    with engine.connect() as connection:
        transaction = connection.begin()
        yield connection
        transaction.rollback()


@pytest.fixture
def app(database_url: URL, connection: Connection) -> Iterator[Flask]:
    app = create_app(app_config(database_url))
    database: Database = app.extensions["database"]
    database.bind(connection)
    yield app
    database.engine.dispose()


@pytest.fixture
def write_token(app: Flask) -> str:
    return issue_token(app, "test-writer", "write")


@pytest.fixture
def client(app: Flask, write_token: str) -> FlaskClient:
    """A client that sends a write-scoped bearer token with every request."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {write_token}"
    return client


@pytest.fixture
def anonymous_client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def fresh_database_url(backend: Backend) -> Iterator[URL]:
    """An empty database of its own, dropped after the test."""
    url = backend.create_database()
    yield url
    backend.drop_database(url)


@pytest.fixture
def live_app(fresh_database_url: URL) -> Iterator[Flask]:
    """An app that really commits, on a migrated database of its own."""
    app = create_app(app_config(fresh_database_url))
    upgrade(app.extensions["database"].engine)
    yield app
    app.extensions["database"].engine.dispose()


@pytest.fixture
def live_client(live_app: Flask) -> FlaskClient:
    client = live_app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {issue_token(live_app, 'live-writer', 'write')}"
    return client


@pytest.fixture
def instance_path(tmp_path: Path) -> Path:
    return tmp_path / "instance"
