"""DATABASE_URL with sslmode=verify-full, as for a managed PostgreSQL (RDS, Cloud SQL, ...).

A throwaway cluster that accepts only TLS, with a certificate for localhost and
127.0.0.1 signed by a CA made here; a second CA stands for the wrong bundle.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from flask import Flask
from sqlalchemy.exc import OperationalError

from app.main import create_app
from app.migrate import upgrade
from tests.support.auth import issue_token
from tests.support.postgres import TlsCluster
from tests.support.server import run_flask


def _url(cluster: TlsCluster, database: str, ca: Path, host: str = "localhost", sslmode: str = "verify-full") -> str:
    return f"postgresql+psycopg://postgres@{host}:{cluster.port}/{database}?sslmode={sslmode}&sslrootcert={ca}"


@pytest.fixture(scope="module")
def database(tls_cluster: TlsCluster) -> str:
    name = f"items_tls_{uuid.uuid4().hex[:12]}"
    dsn = f"host=localhost port={tls_cluster.port} user=postgres dbname=postgres sslmode=verify-full"
    with psycopg.connect(f"{dsn} sslrootcert={tls_cluster.ca}", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name


@pytest.fixture
def tls_app(tls_cluster: TlsCluster, database: str) -> Iterator[Flask]:
    app = create_app({"APP_ENV": "test", "DATABASE_URL": _url(tls_cluster, database, tls_cluster.ca)})
    yield app
    app.extensions["database"].engine.dispose()


def test_verify_full_with_the_right_ca_serves_readiness_and_writes(tls_app: Flask) -> None:
    upgrade(tls_app.extensions["database"].engine)
    client = tls_app.test_client()
    assert client.get("/health/ready").status_code == 200
    token = issue_token(tls_app, f"tls-{uuid.uuid4().hex[:8]}", "write")
    created = client.post("/items", json={"title": "over TLS"}, headers={"Authorization": f"Bearer {token}"})
    assert created.status_code == 201
    with tls_app.extensions["database"].engine.connect() as connection:
        ssl, version = connection.exec_driver_sql(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).one()
    assert ssl is True
    assert version.startswith("TLSv1.")


def test_a_wrong_ca_is_refused_as_a_certificate_verification_failure(tls_cluster: TlsCluster, database: str) -> None:
    app = create_app({"APP_ENV": "test", "DATABASE_URL": _url(tls_cluster, database, tls_cluster.other_ca)})
    try:
        ready = app.test_client().get("/health/ready")
        assert ready.status_code == 503
        assert ready.headers["Retry-After"]
        with pytest.raises(OperationalError, match="SSL error: certificate verify failed"):
            app.extensions["database"].engine.connect().close()
    finally:
        app.extensions["database"].engine.dispose()


def test_the_migration_step_names_the_certificate_failure(tls_cluster: TlsCluster, database: str) -> None:
    """What an operator sees first: the migration Job (or compose's migrate service) fails, saying why."""
    environ = {
        **os.environ,
        "APP_ENV": "test",
        "LOG_FORMAT": "console",
        "DATABASE_URL": _url(tls_cluster, database, tls_cluster.other_ca),
    }
    done = run_flask(environ, "db", "upgrade")
    assert done.returncode != 0
    assert "certificate verify failed" in done.stderr


def test_verify_full_refuses_a_host_name_the_certificate_does_not_name(tls_cluster: TlsCluster, database: str) -> None:
    """verify-ca would accept this; verify-full is what stops a server impersonating the database."""
    url = _url(tls_cluster, database, tls_cluster.ca, host="127.0.0.2")
    app = create_app({"APP_ENV": "test", "DATABASE_URL": url})
    try:
        assert app.test_client().get("/health/ready").status_code == 503
        with pytest.raises(OperationalError, match=r'does not match host name "127\.0\.0\.2"'):
            app.extensions["database"].engine.connect().close()
    finally:
        app.extensions["database"].engine.dispose()


def test_the_server_refuses_connections_without_tls(tls_cluster: TlsCluster, database: str) -> None:
    dsn = f"host=127.0.0.1 port={tls_cluster.port} user=postgres dbname={database} sslmode=disable"
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(dsn, connect_timeout=3).close()
