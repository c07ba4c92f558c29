"""Engine construction and the one-session-per-request lifecycle."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from .config import Settings

SQLITE_BUSY_TIMEOUT_SECONDS = 5


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
    }
    if settings.db_statement_timeout_ms:
        connect_args["options"] = f"-c statement_timeout={settings.db_statement_timeout_ms}"
    return create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=connect_args,
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
    """The engine and session factory of one application."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessionmaker: sessionmaker[Session] = sessionmaker(engine, expire_on_commit=False)


def init_app(app: Flask, settings: Settings) -> Database:
    database = Database(build_engine(settings))
    app.extensions["database"] = database
    app.teardown_appcontext(_close_session)
    return database


def get_database() -> Database:
    database: Database = current_app.extensions["database"]
    return database


def get_session() -> Session:
    """The session of the current request, opened on first use."""
    if "db_session" not in g:
        g.db_session = get_database().sessionmaker()
    session: Session = g.db_session
    return session


def _close_session(_exc: BaseException | None) -> None:
    # close() also rolls back whatever the request did not commit.
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()
