"""Fixtures: a real PgBouncer (configured by docker/pgbouncer/pgbouncer.ini) and a TLS-only cluster."""

from __future__ import annotations

import configparser
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from sqlalchemy import URL

from tests.support.postgres import PgBouncer, TlsCluster, run_pgbouncer, run_tls_cluster

PGBOUNCER_INI = Path(__file__).resolve().parents[2] / "docker" / "pgbouncer" / "pgbouncer.ini"

StartPgBouncer = Callable[..., AbstractContextManager[PgBouncer]]


def shipped_pgbouncer_settings() -> dict[str, str]:
    """The [pgbouncer] section of the production template."""
    parser = configparser.ConfigParser(comment_prefixes=(";", "#"), interpolation=None)
    parser.read_string(PGBOUNCER_INI.read_text())
    return dict(parser["pgbouncer"])


@pytest.fixture
def start_pgbouncer(fresh_database_url: URL) -> StartPgBouncer:
    """Start PgBouncer with the shipped settings (plus ``overrides``) in front of the test server."""
    target = f"host={fresh_database_url.host} port={fresh_database_url.port or 5432}"

    def start(**overrides: str) -> AbstractContextManager[PgBouncer]:
        settings = {**shipped_pgbouncer_settings(), **overrides}
        return run_pgbouncer(settings, {"*": target}, fresh_database_url.username or "postgres")

    return start


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[TlsCluster]:
    with run_tls_cluster() as cluster:
        yield cluster
