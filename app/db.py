"""The database of one app, per request: a reader for reads and single-statement writes, a session for the rest.

Reads take a pooled connection without the pool's ping (a round trip per request). If
that connection turns out dead (the database restarted, or the link was cut and came
back), the read runs once more on a connection the pool does ping: the ping finds the
dead ones and the pool drops them all, as ``pool_pre_ping`` does, so a restart costs no
failed request. Running a read twice is safe: it changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from flask import Flask, current_app, g
from flask.ctx import _AppCtxGlobals
from sqlalchemy import Connection, Dialect, Engine, PoolProxiedConnection
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Executable
from werkzeug.local import LocalProxy

from .config import Settings
from .engine import build_engine, skipping_the_ping

_POSTGRESQL = postgresql_psycopg.dialect()  # type: ignore[no-untyped-call]

T = TypeVar("T")
Values = tuple[Any, ...]

log = logging.getLogger(__name__)


class Query:
    """A statement built once: Core for any database, and its PostgreSQL SQL compiled once."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self.sql = str(statement.compile(dialect=_POSTGRESQL))  # type: ignore[attr-defined]


class CoreReader:
    """Reads and single-statement writes through a Core ``Connection``, in a transaction.

    For SQLite, and for PostgreSQL behind PgBouncer, where reads keep a transaction for
    their statement_timeout (``SET LOCAL``). Rows come as tuples, in the statement's
    column order, as from ``DriverReader``.
    """

    def __init__(self, connection: Connection, *, owned: bool = True) -> None:
        self.connection = connection
        # False for the tests' bound connection: its transaction is the test's, so a reader
        # on it never commits, retries or closes it.
        self.owned = owned

    def all(self, query: Query, params: Mapping[str, Any]) -> Sequence[Values]:
        return self.connection.execute(query.statement, params).all()

    def first(self, query: Query, params: Mapping[str, Any]) -> Values | None:
        return self.connection.execute(query.statement, params).first()

    def commit(self) -> None:
        self.connection.commit()

    def close(self) -> None:
        """Back to the pool; rolls back whatever was not committed."""
        self.connection.close()

    def invalidate(self, exc: BaseException | None = None) -> None:
        self.connection.invalidate(exc)


class DriverReader:
    """Reads and single-statement writes on a pooled psycopg connection itself, in autocommit.

    A statement runs as its compiled SQL: no execution context or Row objects per request,
    and psycopg prepares it server-side after a few runs. No Core ``Connection`` either:
    one checked out with ``isolation_level="AUTOCOMMIT"`` costs about 11 µs more per
    request (its characteristics are set at checkout and reset at checkin); here the psycopg
    connection's own switch is flipped, and flipped back before it returns to the pool,
    where sessions expect transactions. Not owned (the tests' bound connection, inside the
    test's transaction): left as it is, never committed, retried or closed.
    """

    def __init__(self, pooled: PoolProxiedConnection, dialect: Dialect, *, owned: bool = True) -> None:
        self.pooled = pooled
        self.dialect = dialect
        self.owned = owned
        self._driver: Any = cast("Any", pooled.driver_connection)  # psycopg's, never None once checked out
        if owned:
            self._driver.autocommit = True

    def all(self, query: Query, params: Mapping[str, Any]) -> Sequence[Values]:
        rows: list[Values] = self._run(query, params).fetchall()
        return rows

    def first(self, query: Query, params: Mapping[str, Any]) -> Values | None:
        row: Values | None = self._run(query, params).fetchone()
        return row

    def commit(self) -> None:
        return None  # autocommit: each statement is committed as it runs

    def close(self) -> None:
        try:
            if self.pooled.is_valid:
                self._driver.autocommit = False
        except self.dialect.loaded_dbapi.Error as exc:  # broken meanwhile: never back to the pool
            self.pooled.invalidate(exc)
        finally:
            self.pooled.close()

    def invalidate(self, exc: BaseException | None = None) -> None:
        self.pooled.invalidate(exc)

    def _run(self, query: Query, params: Mapping[str, Any]) -> Any:
        try:
            return self._driver.execute(query.sql, params)
        except self.dialect.loaded_dbapi.Error as exc:
            # As Core reports it: a lost connection is invalidated and marked so, and the
            # error handlers (503) see SQLAlchemy's exception types.
            dialect = self.dialect
            gone = dialect.is_disconnect(exc, self._driver, None)
            if gone:
                self.invalidate(exc)
            raise DBAPIError.instance(
                query.sql, dict(params), exc, dialect.loaded_dbapi.Error, connection_invalidated=gone, dialect=dialect
            ) from exc


# The request's connection for reads and single-statement writes (not its session).
Reader = CoreReader | DriverReader


class Database:
    """The engine, the session factory and the readers of one application."""

    def __init__(self, engine: Engine, *, autocommit_reads: bool = True) -> None:
        self.engine = engine
        self.sessionmaker: sessionmaker[Session] = sessionmaker(engine, expire_on_commit=False)
        # A read needs no transaction on PostgreSQL: autocommit spares the BEGIN and
        # ROLLBACK round trips. (SQLite keeps transactions: its BEGIN is emitted by us.)
        self.reads_on_driver = autocommit_reads and engine.dialect.name == "postgresql"
        self.bound: Connection | None = None

    def bind(self, bind: Connection) -> None:
        """Run every session and read on ``bind`` inside its transaction (savepoints for commits).

        The test suite's isolation recipe: the outer transaction is rolled back after
        each test, and even a ``commit()`` in the code under test cannot escape it.
        """
        self.sessionmaker = sessionmaker(bind=bind, join_transaction_mode="create_savepoint", expire_on_commit=False)
        self.bound = bind

    def reader(self, *, ping: bool = False) -> Reader:
        """A reader on a pooled connection, pinged at checkout only if ``ping``."""
        if self.bound is not None:
            if self.reads_on_driver:
                return DriverReader(self.bound.connection, self.engine.dialect, owned=False)
            return CoreReader(self.bound, owned=False)
        with contextlib.nullcontext() if ping else skipping_the_ping():
            if self.reads_on_driver:
                return DriverReader(self._pooled(), self.engine.dialect)
            return CoreReader(self.engine.connect())

    def _pooled(self) -> PoolProxiedConnection:
        """A connection of the pool; a failure to connect reported as Core reports it (a DBAPIError)."""
        dialect = self.engine.dialect
        try:
            return self.engine.raw_connection()
        except dialect.loaded_dbapi.Error as exc:
            gone = dialect.is_disconnect(exc, None, None)
            raise DBAPIError.instance(
                None, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=gone, dialect=dialect
            ) from exc


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


def get_session() -> Session:
    """The session of the current request (its transaction), opened on first use."""
    if "db_session" not in g:
        g.db_session = get_database().sessionmaker()
    session: Session = g.db_session
    return session


def read(query: Callable[[Reader], T]) -> T:
    """Run ``query`` on the request's reader (opened on first use); once more if its connection was dead."""
    reader: Reader | None = g.get("db_reader")
    if reader is None:
        reader = g.db_reader = get_database().reader()
    try:
        return query(reader)
    except DBAPIError as exc:
        if not exc.connection_invalidated or not reader.owned:
            raise
        log.info("read connection lost (%s): reading again on a pinged connection", type(exc.orig).__name__)
    _close_quietly("read connection", g.pop("db_reader"))
    reader = g.db_reader = get_database().reader(ping=True)
    return query(reader)


def write_alone(statement: Callable[[Reader], T]) -> T:
    """Run one write that is atomic on its own (one INSERT ... RETURNING); committed when this returns.

    It runs on the request's reader: in autocommit on PostgreSQL, elsewhere in a transaction
    committed here. Unlike a read it is never run twice (the first try may have been applied
    before the connection broke), so a connection not used yet by the request is pinged at
    checkout, as for every write; one the request has used (its token lookup) is alive.
    """
    reader: Reader | None = g.get("db_reader")
    if reader is None:
        reader = g.db_reader = get_database().reader(ping=True)
    result = statement(reader)
    if reader.owned:
        reader.commit()  # on the psycopg connection in autocommit: nothing left to commit
    return result


def _close(_exc: BaseException | None) -> None:
    """Close what the request opened: one lookup of ``g`` (this runs after every request)."""
    request_globals = cast("LocalProxy[_AppCtxGlobals]", g)._get_current_object()
    session: Session | None = request_globals.pop("db_session", None)
    reader: Reader | None = request_globals.pop("db_reader", None)
    if session is not None:
        _close_quietly("database session", session)
    if reader is not None and reader.owned:
        _close_quietly("read connection", reader)


def _close_quietly(what: str, resource: Session | Reader) -> None:
    # close() also rolls back whatever the request did not commit.
    try:
        resource.close()
    except SQLAlchemyError as exc:
        # The connection died after the response was made (the rollback failed): the
        # response stands, and the broken connection must not go back to the pool.
        log.warning("closing the %s failed: %s", what, type(exc).__name__)
        with contextlib.suppress(SQLAlchemyError):
            resource.invalidate()
