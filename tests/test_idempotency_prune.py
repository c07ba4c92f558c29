"""Expired idempotency keys disappear by themselves, with nobody running `flask idempotency prune`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import URL, Connection, create_engine, insert, select, text

from app.idempotency_prune import CLAIM_KEY, EXTENSION, PRUNE_LOCK_ID, PruneSchedule, prune_expired_keys
from app.main import create_app
from app.models import IdempotencyKey
from tests.support.redis_db import redis_url as _redis_url
from tests.support.tcp import free_port


def _store_key(connection: Connection, key: str, *, age: timedelta) -> None:
    connection.execute(
        insert(IdempotencyKey).values(
            principal="someone",
            key=key,
            request_hash="0" * 64,
            status=201,
            response_body="{}",
            created_at=datetime.now(UTC) - age,
        )
    )


def _keys(connection: Connection) -> set[str]:
    return set(connection.scalars(select(IdempotencyKey.key)))


def _keyed_create(client: FlaskClient, key: str) -> int:
    # Closed as a WSGI server closes it: the prune runs after the response has gone out.
    with client.post("/items", json={"title": "t"}, headers={"Idempotency-Key": key}) as response:
        return response.status_code


def test_a_keyed_create_prunes_expired_keys_of_every_caller(client: FlaskClient, connection: Connection) -> None:
    _store_key(connection, "expired", age=timedelta(hours=25))
    _store_key(connection, "recent", age=timedelta(hours=23))

    assert _keyed_create(client, "new") == 201

    assert _keys(connection) == {"recent", "new"}


def test_a_worker_prunes_at_most_once_per_interval(client: FlaskClient, connection: Connection) -> None:
    assert _keyed_create(client, "first") == 201
    _store_key(connection, "expired-later", age=timedelta(hours=25))

    assert _keyed_create(client, "second") == 201

    assert "expired-later" in _keys(connection)


def test_creates_without_a_key_do_not_prune(client: FlaskClient, connection: Connection) -> None:
    _store_key(connection, "expired", age=timedelta(hours=25))

    with client.post("/items", json={"title": "t"}) as response:
        assert response.status_code == 201

    assert "expired" in _keys(connection)


def test_an_interval_of_zero_turns_pruning_off(instance_path: Path) -> None:
    database_url = f"sqlite:///{instance_path}/x.db"
    app = create_app({"APP_ENV": "test", "DATABASE_URL": database_url, "IDEMPOTENCY_PRUNE_INTERVAL_SECONDS": "0"})
    assert EXTENSION not in app.extensions


@pytest.fixture
def prune_lock_held(fresh_database_url: URL) -> Iterator[None]:
    engine = create_engine(fresh_database_url)
    with engine.connect() as other:
        other.execute(text("SELECT pg_advisory_lock(:id)"), {"id": PRUNE_LOCK_ID})
        yield
        other.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": PRUNE_LOCK_ID})
    engine.dispose()


@pytest.mark.postgresql_only
def test_a_prune_already_running_elsewhere_is_skipped(
    live_app: Flask, live_client: FlaskClient, fresh_database_url: URL, prune_lock_held: None
) -> None:
    engine = create_engine(fresh_database_url)
    with engine.begin() as connection:
        _store_key(connection, "expired", age=timedelta(hours=25))

    assert _keyed_create(live_client, "new") == 201

    with engine.connect() as connection:
        assert _keys(connection) == {"expired", "new"}
    engine.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of its own key: the claim is removed before and after."""
    url = _redis_url()
    client = redis.Redis.from_url(url)
    client.delete(CLAIM_KEY)
    yield url
    client.delete(CLAIM_KEY)
    client.close()


def test_with_redis_one_prune_per_interval_across_workers_and_replicas(redis_url: str) -> None:
    workers = [PruneSchedule(interval=60, redis_url=redis_url) for _ in range(6)]

    assert [worker.due() for worker in workers] == [True, False, False, False, False, False]
    assert 55 <= redis.Redis.from_url(redis_url).ttl(CLAIM_KEY) <= 60


def test_with_redis_down_each_worker_prunes_on_its_own_schedule() -> None:
    port = free_port()  # nothing listens there
    workers = [PruneSchedule(interval=60, redis_url=f"redis://127.0.0.1:{port}/0") for _ in range(2)]

    assert [worker.due() for worker in workers] == [True, True]
    assert [worker.due() for worker in workers] == [False, False]


def test_the_response_goes_out_before_the_prune_runs(client: FlaskClient, connection: Connection) -> None:
    _store_key(connection, "expired", age=timedelta(hours=25))

    response = client.post("/items", json={"title": "t"}, headers={"Idempotency-Key": "new"})
    assert response.status_code == 201
    assert "expired" in _keys(connection)

    response.close()
    assert "expired" not in _keys(connection)


def test_a_backlog_is_pruned_in_batches(app: Flask, connection: Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.idempotency_prune.PRUNE_BATCH", 3)
    for i in range(7):
        _store_key(connection, f"old-{i}", age=timedelta(hours=25 + i))
    _store_key(connection, "recent", age=timedelta(hours=1))

    with app.app_context():
        assert prune_expired_keys() == 7

    assert _keys(connection) == {"recent"}
