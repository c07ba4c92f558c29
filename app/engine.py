"""How the app connects: the engine, its pool and its per-connection settings.

Every checkout of a pooled connection is pinged first (a round trip), as SQLAlchemy's
``pool_pre_ping`` does, except the checkouts of reads (``skipping_the_ping``): a read
that finds its connection dead is run once more on a pinged one instead (app.db.read).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import InvalidatePoolError

from .config import Settings

SQLITE_BUSY_TIMEOUT_SECONDS = 5
# Unacknowledged data for this long means the database host is gone (libpq setting).
TCP_USER_TIMEOUT_MS = 10_000

log = logging.getLogger(__name__)


def build_engine(settings: Settings) -> Engine:
    """Create the engine for ``settings.database_url`` with bounded waits everywhere."""
    url = settings.database_url
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
        _make_sqlite_transactional(engine)
        return engine
    connect_args: dict[str, Any] = {
        "connect_timeout": settings.db_connect_timeout,
        "application_name": "items-api",
        # Notice a database host that vanished (no RST: power loss, partition) in
        # seconds rather than the kernel's minutes, instead of hanging a worker.
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 3,
        "keepalives_count": 3,
        "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
    }
    if settings.db_pgbouncer:
        # PgBouncer in transaction mode gives each transaction whichever server
        # connection is free. psycopg's automatic prepared statements (after 5 runs
        # of a query) live on one server connection and are named per client
        # ("_pg3_0"...), so they collide or vanish; PgBouncer < 1.21 cannot track them.
        connect_args["prepare_threshold"] = None
    else:
        # Sessions in UTC: psycopg then hands back timestamps with datetime.UTC, which the
        # app writes as they are, instead of in the server's zone (often "Etc/UTC", a
        # ZoneInfo), which psycopg converts to and the app converts back from on every value:
        # about 40 µs of a 20-item page. Behind PgBouncer the server's zone stays; the values
        # are the same instants, converted in Python.
        options = ["-c TimeZone=UTC"]
        if settings.db_statement_timeout_ms:
            options.append(f"-c statement_timeout={settings.db_statement_timeout_ms}")
        connect_args["options"] = " ".join(options)
    engine = create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        # Pinged by _ping_at_checkout instead: the same check, skipped for reads.
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args=connect_args,
    )
    _ping_at_checkout(engine)
    if settings.db_pgbouncer and settings.db_statement_timeout_ms:
        _limit_statements_per_transaction(engine, settings.db_statement_timeout_ms)
    return engine


_SKIP_PING: ContextVar[bool] = ContextVar("items_api_skip_ping", default=False)


@contextmanager
def skipping_the_ping() -> Iterator[None]:
    """Check connections out of the pool without pinging them (for reads that retry instead)."""
    token = _SKIP_PING.set(True)
    try:
        yield
    finally:
        _SKIP_PING.reset(token)


def _ping_at_checkout(engine: Engine) -> None:
    """The pool's pre-ping as a ``checkout`` listener, so that reads can skip it.

    As with ``pool_pre_ping``: a ping that finds the connection gone raises
    ``InvalidatePoolError``, and the pool drops every connection opened before (the
    database restarted, so they are all dead) and hands out a new one; any other error
    is raised.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if _SKIP_PING.get():
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                raise InvalidatePoolError(f"pre-ping: {type(exc).__name__}") from exc
            raise


def _limit_statements_per_transaction(engine: Engine, timeout_ms: int) -> None:
    """Set statement_timeout in every transaction, for poolers that refuse startup options.

    PgBouncer refuses the ``options`` startup parameter, and ``ignore_startup_parameters
    = options`` would drop the timeout silently. ``SET LOCAL`` ends with the transaction,
    so it never leaks to another client's transaction on the same server connection.
    """
    statement = f"SET LOCAL statement_timeout = {int(timeout_ms)}"

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(statement)


def log_connection_budget(settings: Settings) -> None:
    """Say at start-up how many connections all replicas may open, against the server's limit."""
    if settings.database_url.get_backend_name() != "postgresql":
        return
    limit = "DB_MAX_CONNECTIONS not set, not checked"
    if settings.db_max_connections:
        available = settings.db_max_connections - settings.db_reserved_connections
        limit = f"limit {settings.db_max_connections} - {settings.db_reserved_connections} reserved = {available}"
    log.info(
        "database connection budget: %d replicas x %d workers x (pool %d + overflow %d) = %d connections; %s",
        settings.expected_replicas,
        settings.web_concurrency,
        settings.db_pool_size,
        settings.db_max_overflow,
        settings.connection_budget,
        limit,
        extra={"connection_budget": settings.connection_budget, "db_pgbouncer": settings.db_pgbouncer},
    )


def _make_sqlite_transactional(engine: Engine) -> None:
    """Let SQLAlchemy, not pysqlite, emit BEGIN, so SAVEPOINTs and rollbacks work.

    This is the recipe from SQLAlchemy's SQLite dialect documentation
    ("Serializable isolation / Savepoints / Transactional DDL").
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Deferred, so reads never wait for a writer. Two transactions that both read and
        # then write conflict, and SQLite fails one at once: that request gets a 503 and
        # may retry. The embedded database is for development; production is PostgreSQL.
        connection.exec_driver_sql("BEGIN")
