"""POST /items with Idempotency-Key: replay, mismatch, in-flight conflict, expiry."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import URL, Connection, create_engine, func, select, text, update

from app.idempotency import _lock_id
from app.models import IdempotencyKey, Item
from tests.support.auth import bearer, issue_token


def _post(client: FlaskClient, key: str, body: dict[str, object], **headers: str) -> object:
    return client.post("/items", json=body, headers={"Idempotency-Key": key, **headers})


def _count_items(connection: Connection) -> int:
    return int(connection.scalar(select(func.count()).select_from(Item)) or 0)


def test_a_retry_with_the_same_key_and_body_replays_the_original(client: FlaskClient, connection: Connection) -> None:
    first = _post(client, "order-1", {"title": "once"})
    second = _post(client, "order-1", {"title": "once"})

    assert first.status_code == second.status_code == 201  # type: ignore[attr-defined]
    assert second.get_json() == first.get_json()  # type: ignore[attr-defined]
    assert second.headers["Location"] == first.headers["Location"]  # type: ignore[attr-defined]
    assert second.headers["Idempotent-Replayed"] == "true"  # type: ignore[attr-defined]
    assert "Idempotent-Replayed" not in first.headers  # type: ignore[attr-defined]
    assert _count_items(connection) == 1


def test_the_same_key_with_another_body_is_a_422(client: FlaskClient, connection: Connection) -> None:
    _post(client, "order-2", {"title": "first"})

    response = _post(client, "order-2", {"title": "second"})

    assert response.status_code == 422  # type: ignore[attr-defined]
    assert response.get_json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]  # type: ignore[attr-defined]
    assert _count_items(connection) == 1


def test_keys_are_scoped_to_the_caller(app: Flask, client: FlaskClient, connection: Connection) -> None:
    other = issue_token(app, "other-writer", "write")

    _post(client, "shared-key", {"title": "mine"})
    theirs = _post(client, "shared-key", {"title": "theirs"}, **bearer(other))

    assert theirs.status_code == 201  # type: ignore[attr-defined]
    assert "Idempotent-Replayed" not in theirs.headers  # type: ignore[attr-defined]
    assert _count_items(connection) == 2


def test_requests_without_a_key_are_not_deduplicated(client: FlaskClient, connection: Connection) -> None:
    client.post("/items", json={"title": "same"})
    client.post("/items", json={"title": "same"})

    assert _count_items(connection) == 2


@pytest.mark.parametrize(
    "key", ["", "x" * 256, "ключ", "tab\there", "new\nline"], ids=["empty", "256-chars", "non-ascii", "tab", "newline"]
)
def test_a_malformed_key_is_a_422(client: FlaskClient, connection: Connection, key: str) -> None:
    environ = {"HTTP_IDEMPOTENCY_KEY": key}

    response = client.post("/items", json={"title": "t"}, environ_overrides=environ)

    assert response.status_code == 422
    assert _count_items(connection) == 0


def test_a_key_of_255_printable_characters_is_accepted(client: FlaskClient) -> None:
    assert _post(client, "k" * 254 + "~", {"title": "t"}).status_code == 201  # type: ignore[attr-defined]


def test_a_rejected_body_stores_no_key(client: FlaskClient, connection: Connection) -> None:
    assert _post(client, "bad-first", {"title": ""}).status_code == 422  # type: ignore[attr-defined]

    assert _post(client, "bad-first", {"title": "fixed"}).status_code == 201  # type: ignore[attr-defined]


def test_an_expired_key_can_be_used_again(client: FlaskClient, connection: Connection) -> None:
    _post(client, "old", {"title": "yesterday"})
    connection.execute(update(IdempotencyKey).values(created_at=datetime.now(UTC) - timedelta(hours=25)))

    again = _post(client, "old", {"title": "today"})

    assert again.status_code == 201  # type: ignore[attr-defined]
    assert "Idempotent-Replayed" not in again.headers  # type: ignore[attr-defined]
    assert _count_items(connection) == 2


def test_prune_deletes_only_expired_keys(app: Flask, client: FlaskClient, connection: Connection) -> None:
    _post(client, "stale", {"title": "a"})
    connection.execute(update(IdempotencyKey).values(created_at=datetime.now(UTC) - timedelta(hours=25)))
    _post(client, "fresh", {"title": "b"})

    result = app.test_cli_runner().invoke(args=["idempotency", "prune"])

    assert result.exit_code == 0, result.output
    assert "Pruned 1 " in result.output
    assert connection.scalars(select(IdempotencyKey.key)).all() == ["fresh"]


def test_the_openapi_document_declares_the_header(client: FlaskClient) -> None:
    post = client.get("/openapi.json").get_json()["paths"]["/items"]["post"]

    assert "Idempotency-Key" in [p["name"] for p in post["parameters"] if p["in"] == "header"]
    assert "409" in post["responses"]


@pytest.mark.postgresql_only
def test_a_key_still_in_flight_is_a_409(live_app: Flask, live_client: FlaskClient, fresh_database_url: URL) -> None:
    holder = create_engine(fresh_database_url)
    try:
        with holder.connect() as connection:
            # Hold the key's lock as a first, still-running request would.
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _lock_id("live-writer", "busy")})
            response = _post(live_client, "busy", {"title": "t"})
            connection.execute(text("SELECT pg_advisory_unlock_all()"))
        assert response.status_code == 409  # type: ignore[attr-defined]
        assert _post(live_client, "busy", {"title": "t"}).status_code == 201  # type: ignore[attr-defined]
    finally:
        holder.dispose()


def test_concurrent_requests_with_one_key_create_exactly_one_item(
    live_app: Flask, live_client: FlaskClient, fresh_database_url: URL
) -> None:
    token = live_client.environ_base["HTTP_AUTHORIZATION"]
    statuses: list[int] = []
    bodies: list[object] = []
    start = threading.Barrier(8)

    def send() -> None:
        client = live_app.test_client()
        start.wait()
        response = client.post(
            "/items", json={"title": "race"}, headers={"Authorization": token, "Idempotency-Key": "race-key"}
        )
        statuses.append(response.status_code)
        if response.status_code == 201:
            bodies.append(response.get_json())

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    engine = create_engine(fresh_database_url)
    with engine.connect() as connection:
        titles = connection.scalars(select(Item.title)).all()
    engine.dispose()
    assert titles == ["race"]
    # SQLite fails a conflicting writer at once (503, retryable); PostgreSQL answers 409.
    allowed = {201, 409} if fresh_database_url.get_backend_name() == "postgresql" else {201, 409, 503}
    assert set(statuses) <= allowed
    assert 201 in statuses
    assert all(body == bodies[0] for body in bodies)
