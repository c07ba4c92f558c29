"""A throwaway PostgreSQL database: create, migrate with the app's own command, seed, drop."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from tests.support import databases
from tests.support.server import flask_cli, run_flask

SEED_SQL = """
INSERT INTO items (title, description, created_at, updated_at)
SELECT
    'Item ' || n,
    CASE WHEN n %% 10 = 0 THEN NULL ELSE 'Seeded item number ' || n || ': ' || repeat('lorem ipsum ', 6) END,
    now() - (%(count)s - n) * interval '1 minute',
    now() - (%(count)s - n) * interval '1 minute' + interval '7 seconds'
FROM generate_series(1, %(count)s) AS n
"""


@dataclass(frozen=True)
class BenchDatabase:
    """Where the benchmark's own database lives, in the URL forms each side wants."""

    name: str
    conninfo: str  # libpq form, for psycopg (the ceiling and the harness)

    @property
    def sqlalchemy_url(self) -> str:
        params = conninfo_to_dict(self.conninfo)
        auth = params.get("user", "postgres")
        if params.get("password"):
            auth += f":{params['password']}"
        host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
        return f"postgresql+psycopg://{auth}@{host}:{port}/{self.name}"


def create(admin_conninfo: str) -> BenchDatabase:
    name = databases.create_database(admin_conninfo, prefix="items_bench")
    return BenchDatabase(name=name, conninfo=make_conninfo(admin_conninfo, dbname=name))


def drop(admin_conninfo: str, database: BenchDatabase) -> None:
    databases.drop_database(admin_conninfo, database.name)


def _env(database: BenchDatabase) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database.sqlalchemy_url, "APP_ENV": "local"}


def migrate(database: BenchDatabase, app_root: Path, flask: Path) -> None:
    """Apply the app's migrations with the app's own command, as a deployment does."""
    flask_cli(_env(database), "db", "upgrade", flask=str(flask), cwd=app_root)


def seed(database: BenchDatabase, count: int) -> tuple[int, int]:
    """Insert ``count`` items, a minute apart, every tenth without description; (min id, max id)."""
    with psycopg.connect(database.conninfo, autocommit=True) as conn:
        conn.execute(SEED_SQL, {"count": count})
        conn.execute("VACUUM ANALYZE items")
        row = conn.execute("SELECT min(id), max(id) FROM items").fetchone()
    assert row is not None  # noqa: S101 (an aggregate always returns a row)
    return int(row[0]), int(row[1])


def backend_pids(admin_conninfo: str, database: BenchDatabase) -> dict[str, list[int]]:
    """PostgreSQL backend processes serving each side: the ceiling's by name, the rest the API's."""
    from .ceiling import APPLICATION_NAME

    query = "SELECT pid, application_name FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
    pids: dict[str, list[int]] = {"api": [], "ceiling": []}
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        for pid, name in conn.execute(query, (database.name,)).fetchall():
            pids["ceiling" if name == APPLICATION_NAME else "api"].append(int(pid))
    return pids


def server_version(admin_conninfo: str) -> str:
    with psycopg.connect(admin_conninfo) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def write_token(app_root: Path, flask: Path, database: BenchDatabase) -> str | None:
    """A write token from ``flask tokens create`` once the app has that command, else None."""
    if run_flask(_env(database), "tokens", "--help", flask=str(flask), cwd=app_root).returncode != 0:
        return None
    created = flask_cli(
        _env(database), "tokens", "create", "--name", "bench", "--scope", "write", flask=str(flask), cwd=app_root
    )
    # The command prints the token alone on a line; log lines may share stdout.
    alone = [line.strip() for line in created.splitlines() if len(line.split()) == 1]
    if not alone:
        raise RuntimeError(f"`flask tokens create` printed no token line: {created!r}")
    return alone[-1]
