"""The app through a real PgBouncer (Debian's package) in transaction pooling mode.

Two apps on one PgBouncer stand for two server workers (or replicas): each has its
own connection pool, and PgBouncer hands their transactions the same few server
connections. Without DB_PGBOUNCER that breaks in two ways, shown first; with it every
HTTP flow works, migrations included.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack

import psycopg
import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import URL, text
from sqlalchemy.exc import OperationalError

from app.db import get_session
from app.main import create_app
from app.migrate import upgrade
from tests.db.conftest import PGBOUNCER_INI, StartPgBouncer
from tests.support.auth import issue_token
from tests.support.databases import url_string
from tests.support.postgres import PgBouncer, pgbouncer_show

pytestmark = pytest.mark.postgresql_only

PGBOUNCER_DIR = PGBOUNCER_INI.parent
ITEMS = 40  # x (create, get, patch) + pages + deletes: several hundred transactions


def _through(bouncer: PgBouncer, database: URL) -> URL:
    return database.set(host="127.0.0.1", port=bouncer.port)


def _app(url: URL, **settings: object) -> Flask:
    # Generous rate limits: the many requests here are not the point.
    limits = {"RATE_LIMIT": "100000 per minute", "RATE_LIMIT_WRITES": "100000 per minute"}
    return create_app({"APP_ENV": "test", "DATABASE_URL": url_string(url), **limits, **settings})


def _workers(url: URL, count: int, **settings: object) -> Iterator[Flask]:
    for _ in range(count):
        yield _app(url, **settings)


def _clients(apps: list[Flask]) -> list[FlaskClient]:
    """A write-token client per worker (tokens live in the database, shared by both)."""
    clients = []
    for number, app in enumerate(apps):
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {issue_token(app, f'worker-{number}', 'write')}"
        clients.append(client)
    return clients


def _dispose(apps: list[Flask]) -> None:
    for app in apps:
        app.extensions["database"].engine.dispose()


def test_debian_pgbouncer_is_older_than_prepared_statement_support(start_pgbouncer: StartPgBouncer) -> None:
    """1.21 added max_prepared_statements; before it the app must not prepare (DB_PGBOUNCER)."""
    with start_pgbouncer() as bouncer:
        major, minor, *_ = (int(part) for part in bouncer.version.split("."))
        assert (major, minor) >= (1, 17), bouncer.version
        if (major, minor) < (1, 21):
            assert "max_prepared_statements" not in bouncer.config.read_text()


def test_pgbouncer_refuses_the_statement_timeout_startup_option(
    start_pgbouncer: StartPgBouncer, fresh_database_url: URL
) -> None:
    """The app's default sends options=-c statement_timeout=...: PgBouncer closes the connection."""
    with start_pgbouncer() as bouncer:
        app = _app(_through(bouncer, fresh_database_url))
        try:
            assert app.test_client().get("/health/ready").status_code == 503
            with pytest.raises(OperationalError, match="unsupported startup parameter: options"):
                app.extensions["database"].engine.connect().close()
        finally:
            _dispose([app])


def test_ignoring_the_options_parameter_would_drop_the_statement_timeout_silently(
    start_pgbouncer: StartPgBouncer, fresh_database_url: URL
) -> None:
    """Why ``ignore_startup_parameters = options`` is no fix: the app connects, unprotected."""
    with start_pgbouncer(ignore_startup_parameters="extra_float_digits, options") as bouncer:
        app = _app(_through(bouncer, fresh_database_url), DB_STATEMENT_TIMEOUT_MS="5000")
        direct = _app(fresh_database_url, DB_STATEMENT_TIMEOUT_MS="5000")
        try:
            with app.app_context():
                assert get_session().scalar(text("SHOW statement_timeout")) == "0"
            with direct.app_context():
                assert get_session().scalar(text("SHOW statement_timeout")) == "5s"
        finally:
            _dispose([app, direct])


def test_prepared_statements_of_two_workers_collide_without_db_pgbouncer(
    start_pgbouncer: StartPgBouncer, fresh_database_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    """psycopg prepares a query on its 6th run in committed transactions, as "_pg3_0" in each client.

    Both workers' statements then meet on the same server connection (or miss it).
    Reads alone do not show it: a rollback makes psycopg forget its prepared statements.
    """
    # Startup options ignored, so the app can connect at all (see the tests above).
    with start_pgbouncer(ignore_startup_parameters="extra_float_digits, options") as bouncer:
        apps = list(_workers(_through(bouncer, fresh_database_url), 2))
        try:
            upgrade(apps[0].extensions["database"].engine)
            workers = _clients(apps)
            statuses = [workers[i % 2].post("/items", json={"title": f"item {i}"}).status_code for i in range(24)]
        finally:
            _dispose(apps)
    assert 500 in statuses, statuses
    failures = [r.exc_info[1] for r in caplog.records if r.exc_info and r.exc_info[1] is not None]
    originals = {type(getattr(exc, "orig", exc)) for exc in failures}
    assert originals & {psycopg.errors.DuplicatePreparedStatement, psycopg.errors.InvalidSqlStatementName}, originals


def test_every_http_flow_works_through_pgbouncer_with_db_pgbouncer(
    start_pgbouncer: StartPgBouncer, fresh_database_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    user = fresh_database_url.username or "postgres"
    with start_pgbouncer() as bouncer, ExitStack() as cleanup:
        url = _through(bouncer, fresh_database_url)
        apps = list(_workers(url, 2, DB_PGBOUNCER="true"))
        cleanup.callback(_dispose, apps)
        upgrade(apps[0].extensions["database"].engine)  # the migration Job's path, through PgBouncer too
        workers = _clients(apps)

        def worker(i: int) -> FlaskClient:
            return workers[i % 2]

        for client in workers:
            assert client.get("/health/ready").status_code == 200

        ids = []
        for i in range(ITEMS):
            created = worker(i).post("/items", json={"title": f"item {i}", "description": "via PgBouncer"})
            assert created.status_code == 201, created.get_json()
            ids.append(created.get_json()["id"])
            assert worker(i + 1).get(f"/items/{ids[-1]}").get_json()["title"] == f"item {i}"
            patched = worker(i).patch(f"/items/{ids[-1]}", json={"description": None})
            assert patched.status_code == 200
            assert patched.get_json()["description"] is None

        seen, cursor, page = [], None, 0
        while True:
            query = f"/items?limit=7&cursor={cursor}" if cursor else "/items?limit=7"
            body = worker(page).get(query).get_json()
            seen += [item["id"] for item in body["items"]]
            cursor, page = body["next_cursor"], page + 1
            if cursor is None:
                break
        assert seen == sorted(ids, reverse=True)

        for i, item_id in enumerate(ids[::2]):
            assert worker(i).delete(f"/items/{item_id}").status_code == 204
            assert worker(i + 1).get(f"/items/{item_id}").status_code == 404
        assert len(worker(0).get("/items?limit=100").get_json()["items"]) == ITEMS // 2

        servers = [s for s in pgbouncer_show(bouncer, user, "SERVERS") if s["database"] == fresh_database_url.database]
        stats = next(s for s in pgbouncer_show(bouncer, user, "STATS") if s["database"] == fresh_database_url.database)
    # Hundreds of transactions from two pools shared a handful of server connections.
    assert int(stats["total_xact_count"]) >= 6 * ITEMS
    assert 1 <= len(servers) <= 3
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_statement_timeout_holds_per_transaction_through_pgbouncer(
    start_pgbouncer: StartPgBouncer, fresh_database_url: URL
) -> None:
    """SET LOCAL in each transaction: enforced for the app, never left on the server connection."""
    with start_pgbouncer() as bouncer:
        url = _through(bouncer, fresh_database_url)
        app = _app(url, DB_PGBOUNCER="true", DB_STATEMENT_TIMEOUT_MS="200")
        try:
            with app.app_context():
                assert get_session().scalar(text("SHOW statement_timeout")) == "200ms"
                with pytest.raises(OperationalError, match="statement timeout"):
                    get_session().execute(text("SELECT pg_sleep(2)"))
            with app.app_context():
                assert get_session().scalar(text("SELECT 1")) == 1
            # Another client on the same (only) server connection sees no leftover setting.
            with psycopg.connect(url_string(url.set(drivername="postgresql")), autocommit=True) as other:
                assert other.execute("SHOW statement_timeout").fetchone() == ("0",)
        finally:
            _dispose([app])


def test_the_compose_service_runs_the_pgbouncer_tested_here(start_pgbouncer: StartPgBouncer) -> None:
    """docker/pgbouncer: the image installs the Debian release this file tested, the app is told."""
    with start_pgbouncer() as bouncer:
        major_minor = ".".join(bouncer.version.split(".")[:2])
    dockerfile = (PGBOUNCER_DIR / "Dockerfile").read_text()
    assert f"'pgbouncer={major_minor}.*'" in dockerfile
    compose = yaml.safe_load((PGBOUNCER_DIR / "docker-compose.pgbouncer.yml").read_text())["services"]
    for service in ("api", "migrate"):
        assert compose[service]["environment"]["DB_PGBOUNCER"] == "true"
        assert compose[service]["depends_on"]["pgbouncer"] == {"condition": "service_healthy"}
    mounted = {volume.split(":")[1] for volume in compose["pgbouncer"]["volumes"]}
    assert mounted == {"/etc/pgbouncer/pgbouncer.ini", "/etc/pgbouncer/userlist.txt"}


@pytest.mark.postgresql_only
def test_reads_keep_the_statement_timeout_in_pgbouncer_mode(fresh_database_url: URL) -> None:
    """Autocommit reads would skip the per-transaction SET LOCAL: behind PgBouncer they stay transactional."""
    app = _app(fresh_database_url, DB_PGBOUNCER="true", DB_STATEMENT_TIMEOUT_MS="300")
    try:
        with app.test_request_context("/items", method="GET"):
            assert get_session().scalar(text("SHOW statement_timeout")) == "300ms"
    finally:
        _dispose([app])
