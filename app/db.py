"""Engine construction and the one-session-per-request lifecycle."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, cast

from flask import Flask, current_app, g, has_request_context, request
from flask.ctx import _AppCtxGlobals
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.local import LocalProxy

from .config import Settings

SQLITE_BUSY_TIMEOUT_SECONDS = 5
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
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
    elif settings.db_statement_timeout_ms:
        connect_args["options"] = f"-c statement_timeout={settings.db_statement_timeout_ms}"
    engine = create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=connect_args,
    )
    if settings.db_pgbouncer and settings.db_statement_timeout_ms:
        _limit_statements_per_transaction(engine, settings.db_statement_timeout_ms)
    return engine


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


class Database:
    """The engine, the session factories and the read connections of one application."""

    def __init__(self, engine: Engine, *, autocommit_reads: bool = True) -> None:
        self.engine = engine
        self.sessionmaker: sessionmaker[Session] = sessionmaker(engine, expire_on_commit=False)
        self.read_engine = engine
        if autocommit_reads and engine.dialect.name == "postgresql":
            # A read needs no transaction: autocommit spares the BEGIN and ROLLBACK
            # round trips. (SQLite keeps transactions: its BEGIN is emitted by us.)
            self.read_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.read_sessionmaker = sessionmaker(self.read_engine, expire_on_commit=False)
        self.bound: Connection | None = None

    def bind(self, bind: Connection) -> None:
        """Run every session and read on ``bind`` inside its transaction (savepoints for commits).

        The test suite's isolation recipe: the outer transaction is rolled back after
        each test, and even a ``commit()`` in the code under test cannot escape it.
        """
        self.sessionmaker = sessionmaker(bind=bind, join_transaction_mode="create_savepoint", expire_on_commit=False)
        self.read_sessionmaker = self.sessionmaker
        self.bound = bind

    def connect_for_reads(self) -> Connection:
        """A Core connection (no ORM session) from the same pool, pre-pinged at checkout."""
        return self.bound if self.bound is not None else self.read_engine.connect()


def init_app(app: Flask, settings: Settings) -> Database:
    # Behind PgBouncer, statement_timeout is a SET LOCAL in each transaction (see
    # build_engine): a read in autocommit would run without it, so reads keep theirs.
    database = Database(build_engine(settings), autocommit_reads=not settings.db_pgbouncer)
    app.extensions["database"] = database
    app.teardown_appcontext(_close)
    return database


def get_database() -> Database:
    database: Database = current_app.extensions["database"]
    return database


def get_session(*, single_statement: bool = False) -> Session:
    """The session of the current request, opened on first use; autocommit for reads.

    ``single_statement``: the caller's write is one statement, atomic on its own, so it may
    run in autocommit too (no BEGIN and COMMIT round trips), unless the request already
    opened its session in a transaction.
    """
    if "db_session" not in g:
        database = get_database()
        reading = has_request_context() and request.method in SAFE_METHODS
        factory = database.read_sessionmaker if reading or single_statement else database.sessionmaker
        g.db_session = factory()
    session: Session = g.db_session
    return session


def get_read_connection() -> Connection:
    """The request's connection for plain reads (hot paths without an ORM session), on first use.

    Pool pre-ping still checks it at checkout, so a database restart costs no failed request.
    """
    connection: Connection | None = g.get("db_read_connection")
    if connection is None:
        connection = g.db_read_connection = get_database().connect_for_reads()
    return connection


def _close(_exc: BaseException | None) -> None:
    """Close what the request opened: one lookup of ``g`` (this runs after every request)."""
    request_globals = cast("LocalProxy[_AppCtxGlobals]", g)._get_current_object()
    session: Session | None = request_globals.pop("db_session", None)
    connection: Connection | None = request_globals.pop("db_read_connection", None)
    if session is not None:
        _close_quietly("database session", session)
    if connection is not None and connection is not get_database().bound:
        _close_quietly("read connection", connection)


def _close_quietly(what: str, resource: Session | Connection) -> None:
    # close() also rolls back whatever the request did not commit.
    try:
        resource.close()
    except SQLAlchemyError as exc:
        # The connection died after the response was made (the rollback failed): the
        # response stands, and the broken connection must not go back to the pool.
        log.warning("closing the %s failed: %s", what, type(exc).__name__)
        with contextlib.suppress(SQLAlchemyError):
            resource.invalidate()
