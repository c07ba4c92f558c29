"""Round trips per request, counted on the wire: libpq's protocol trace (one ReadyForQuery
ends each exchange with PostgreSQL) and the Redis commands the limiter sends."""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from psycopg import pq
from sqlalchemy import URL, event

from app.main import create_app
from app.migrate import upgrade
from tests.conftest import app_config
from tests.support.auth import bearer, issue_token
from tests.support.redis_db import redis_url as _redis_url

pytestmark = pytest.mark.postgresql_only
_LIBC = ctypes.CDLL(None)
_PARSED = re.compile(r'^\s*"[^"]*"\s+"')


def _first_word(statement: str) -> str:
    return statement.split(None, 1)[0].upper() if statement.strip() else ";"


class WireCount:
    """Traces every connection the engine opens from now on; counts exchanges with the server."""

    def __init__(self, app: Flask, trace_dir: Path) -> None:
        self.trace_dir = trace_dir
        self.fds: list[int] = []
        self.redis: list[str] = []
        event.listen(app.extensions["database"].engine, "connect", self._trace)
        connection = app.extensions["rate_limiter"].shared.client
        send = connection.execute_command

        def counting(*args: Any, **options: Any) -> Any:
            self.redis.append(str(args[0]))
            return send(*args, **options)

        connection.execute_command = counting

    def _trace(self, dbapi_connection: Any, _record: object) -> None:
        fd = os.open(self.trace_dir / f"{len(self.fds)}.trace", os.O_WRONLY | os.O_CREAT)
        self.fds.append(fd)
        dbapi_connection.pgconn.trace(fd)
        dbapi_connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

    def sql(self) -> list[str]:
        """One entry per exchange so far: its statement's first word (";" is the pool's pre-ping)."""
        _LIBC.fflush(None)  # libpq writes the trace through a buffered FILE
        sent: list[str] = []
        for path in sorted(self.trace_dir.glob("*.trace")):
            statement = "PREPARED"  # a Bind of a statement prepared earlier has no text
            for line in path.read_text().splitlines():
                fields = line.split("\t")
                if len(fields) < 3 or fields[0] != "F":
                    continue
                text = fields[3] if len(fields) > 3 else ""
                if fields[2] == "Query":
                    sent.append(_first_word(text.strip().strip('"')))
                elif fields[2] == "Parse":  # name, then the statement (maybe continued on more lines)
                    statement = _first_word(_PARSED.sub("", text, count=1))
                elif fields[2] == "Sync":
                    sent.append(statement)
                    statement = "PREPARED"
        return sent

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


def _wire(url: URL, trace_dir: Path, **settings: object) -> tuple[Flask, WireCount]:
    app = create_app(app_config(url, REDIS_URL=_redis_url(), RATE_LIMIT="1000 per minute", **settings))
    # Every hit to Redis (no batching), so that each request shows its limiter round trip.
    app.extensions["rate_limiter"].shared.batch = 1
    upgrade(app.extensions["database"].engine)
    app.extensions["database"].engine.dispose()  # only connections opened from here on are traced
    return app, WireCount(app, trace_dir)


@pytest.fixture
def wire(fresh_database_url: URL, tmp_path: Path) -> Iterator[tuple[Flask, WireCount]]:
    app, count = _wire(fresh_database_url, tmp_path, TOKEN_CACHE_SECONDS=5)  # production's default
    yield app, count
    count.close()
    app.extensions["database"].engine.dispose()


def _exchanges(count: WireCount, request: Any) -> tuple[list[str], list[str]]:
    sql, redis = len(count.sql()), len(count.redis)
    response = request()
    assert response.status_code < 300, response.get_json()
    return count.sql()[sql:], count.redis[redis:]


def test_post_items_round_trips(wire: tuple[Flask, WireCount]) -> None:
    app, count = wire
    headers = bearer(issue_token(app, "writer", "write"))
    client = app.test_client()
    client.post("/items", json={"title": "warm-up"}, headers=headers)  # opens the pooled connection

    sql, redis = _exchanges(count, lambda: client.post("/items", json={"title": "t"}, headers=headers))

    assert sql == [";", "INSERT"]  # pre-ping, INSERT ... RETURNING in autocommit; the token is cached
    assert redis == ["EVALSHA"]  # RATE_LIMIT and RATE_LIMIT_WRITES, in one call


def test_post_items_round_trips_without_the_token_cache(fresh_database_url: URL, tmp_path: Path) -> None:
    app, count = _wire(fresh_database_url, tmp_path, TOKEN_CACHE_SECONDS=0)
    try:
        headers = bearer(issue_token(app, "writer", "write"))
        client = app.test_client()
        client.post("/items", json={"title": "warm-up"}, headers=headers)

        sql, _ = _exchanges(count, lambda: client.post("/items", json={"title": "t"}, headers=headers))
    finally:
        count.close()
        app.extensions["database"].engine.dispose()

    # The token lookup (a read: no ping) proves the connection alive; the INSERT follows on it.
    assert sql == ["SELECT", "INSERT"]


def test_an_idempotent_create_keeps_its_transaction(wire: tuple[Flask, WireCount]) -> None:
    app, count = wire
    headers = bearer(issue_token(app, "writer", "write"))
    client = app.test_client()
    client.post("/items", json={"title": "warm-up"}, headers=headers)

    sql, _ = _exchanges(
        count, lambda: client.post("/items", json={"title": "t"}, headers={**headers, "Idempotency-Key": "k-1"})
    )

    assert sql[:2] == [";", "BEGIN"]
    assert sql[-1] == "COMMIT"
    assert "INSERT" in sql


def test_reads_round_trips(wire: tuple[Flask, WireCount]) -> None:
    app, count = wire
    token = bearer(issue_token(app, "reader", "read"))
    client = app.test_client()
    item = client.post("/items", json={"title": "t"}, headers=bearer(issue_token(app, "writer", "write"))).get_json()

    for path in ("/items?limit=20", f"/items/{item['id']}"):
        sql, redis = _exchanges(count, lambda path=path: client.get(path))
        assert sql == ["SELECT"], path  # the query alone: reads skip the ping (they retry instead)
        assert redis == ["EVALSHA"], path

    # A token read on a cache miss shares the read's connection: one checkout.
    sql, _ = _exchanges(count, lambda: client.get(f"/items/{item['id']}", headers=token))
    assert sql == ["SELECT", "SELECT"]
