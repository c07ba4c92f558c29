"""TOKEN_CACHE_SECONDS: a worker may use a token it looked up for that long, and no longer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import URL, Connection

from app import crud
from app.auth import TokenCache
from app.config import load_settings
from app.main import create_app
from tests.conftest import app_config
from tests.support.auth import bearer, issue_token


@pytest.fixture
def cached_app(database_url: URL, connection: Connection) -> Iterator[Flask]:
    app = create_app(app_config(database_url, TOKEN_CACHE_SECONDS=5))
    app.extensions["database"].bind(connection)
    yield app
    app.extensions["database"].engine.dispose()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr("app.auth.time.monotonic", lambda: now[0])
    return now


def _revoke(app: Flask, name: str) -> None:
    with app.extensions["database"].sessionmaker.begin() as session:
        crud.tokens.revoke_token(session, name)


def test_a_revoked_token_works_at_most_token_cache_seconds_longer(cached_app: Flask, clock: list[float]) -> None:
    client, token = cached_app.test_client(), issue_token(cached_app, "soon-revoked", "write")
    assert client.post("/items", json={"title": "a"}, headers=bearer(token)).status_code == 201

    _revoke(cached_app, "soon-revoked")
    clock[0] += 4.9
    assert client.post("/items", json={"title": "b"}, headers=bearer(token)).status_code == 201  # within the bound
    clock[0] += 0.2
    assert client.post("/items", json={"title": "c"}, headers=bearer(token)).status_code == 401  # past it


def test_the_cache_still_checks_the_secret(cached_app: Flask, clock: list[float]) -> None:
    client, token = cached_app.test_client(), issue_token(cached_app, "real", "write")
    assert client.post("/items", json={"title": "a"}, headers=bearer(token)).status_code == 201

    forged = token[:-5] + ("AAAAA" if not token.endswith("AAAAA") else "BBBBB")

    assert client.post("/items", json={"title": "b"}, headers=bearer(forged)).status_code == 401


def test_an_unknown_key_id_is_not_cached(cached_app: Flask) -> None:
    cache: TokenCache = cached_app.extensions["token_cache"]
    client = cached_app.test_client()

    client.post("/items", json={"title": "a"}, headers=bearer("itm_0123456789abcdef_" + "A" * 43))

    assert cache.get("0123456789abcdef") is None


def test_the_cache_is_bounded() -> None:
    cache = TokenCache(5)
    for n in range(TokenCache.MAX_ENTRIES + 10):
        cache.put(f"{n:016x}", "hash", None)

    assert len(cache._entries) <= TokenCache.MAX_ENTRIES


def test_the_default_is_five_seconds_in_production_and_off_elsewhere() -> None:
    production = load_settings(
        {
            "APP_ENV": "production",
            "DATABASE_URL": "postgresql://db/items",
            "SECRET_KEY": "k" * 48,
            "REDIS_URL": "redis://r",
        },
        environ={},
    )
    test = load_settings({"APP_ENV": "test"}, environ={})

    assert production.token_cache_seconds == 5
    assert test.token_cache_seconds == 0
