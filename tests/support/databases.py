"""Throwaway databases: on a PostgreSQL server we hold admin access to, or SQLite files."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
from sqlalchemy import URL, make_url

from app.config import normalize_database_url

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def url_string(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def libpq_dsn(url: URL) -> str:
    return url_string(url.set(drivername="postgresql"))


def create_database(admin_dsn: str, name: str | None = None, prefix: str = "items_test") -> str:
    """Create a database (a fresh random name unless given) through ``admin_dsn``; its name."""
    name = name or f"{prefix}_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(admin_dsn: str, name: str) -> None:
    # FORCE: a server that did not stop cleanly must not keep the database alive.
    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seeded_database(admin_url: str, prefix: str, seed_sql: str) -> str:
    """A fresh database on ``admin_url``'s server, migrated to head and seeded; its URL."""
    from sqlalchemy import create_engine, text

    from app.migrate import upgrade

    admin = make_url(admin_url)
    name = create_database(libpq_dsn(admin), prefix=prefix)
    url = url_string(admin.set(database=name))
    engine = create_engine(url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text(seed_sql))
    engine.dispose()
    return url


def drop_seeded_database(url: str) -> None:
    """Drop a database made by :func:`seeded_database`, through the server's ``postgres`` database."""
    parsed = make_url(url)
    drop_database(libpq_dsn(parsed.set(database="postgres")), str(parsed.database))


class PostgresBackend:
    """Creates a fresh database per use on a server we only hold admin access to."""

    name = "postgresql"

    def __init__(self, admin_url: URL) -> None:
        self.admin_url = admin_url

    def create_database(self) -> URL:
        return self.admin_url.set(database=create_database(libpq_dsn(self.admin_url)))

    def drop_database(self, url: URL) -> None:
        drop_database(libpq_dsn(self.admin_url), str(url.database))

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return url_string(self.admin_url.set(database="<throwaway>"))


class SqliteBackend:
    """A new database file per use, in pytest's temporary directory."""

    name = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def create_database(self) -> URL:
        return make_url(f"sqlite:///{self.directory / f'{uuid.uuid4().hex[:16]}.db'}")

    def drop_database(self, url: URL) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{url.database}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return f"files under {self.directory}"


Backend = PostgresBackend | SqliteBackend


def reachable_postgres(url_text: str) -> tuple[URL, str | None]:
    """The PostgreSQL admin URL and, if it does not answer, why."""
    url = normalize_database_url("TEST_DATABASE_URL", url_text)
    try:
        psycopg.connect(libpq_dsn(url), connect_timeout=3).close()
    except psycopg.Error as exc:
        return url, str(exc).strip() or type(exc).__name__
    return url, None
