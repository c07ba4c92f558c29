"""Throwaway databases on each backend the suite runs against."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
from sqlalchemy import URL, create_engine, make_url, text

from app.config import normalize_database_url

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def url_string(url: URL) -> str:
    return url.render_as_string(hide_password=False)


class PostgresBackend:
    """Creates a fresh database per use on a server we only hold admin access to."""

    name = "postgresql"

    def __init__(self, admin_url: URL) -> None:
        self.admin_url = admin_url
        self._admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")

    def create_database(self) -> URL:
        name = f"items_test_{uuid.uuid4().hex[:16]}"
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        return self.admin_url.set(database=name)

    def drop_database(self, url: URL) -> None:
        with self._admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))

    def close(self) -> None:
        self._admin.dispose()

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
    dsn = url_string(url.set(drivername="postgresql"))
    try:
        psycopg.connect(dsn, connect_timeout=3).close()
    except psycopg.Error as exc:
        return url, str(exc).strip() or type(exc).__name__
    return url, None
