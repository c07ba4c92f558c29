"""Rate limits: 429 problem+json with Retry-After, keyed per token or per client address,
shared across app instances through Redis, and fail-open when Redis is down."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from sqlalchemy import URL, Connection

from app.main import create_app
from tests.conftest import app_config
from tests.support.auth import bearer, issue_token
from tests.support.redis_db import redis_url as _redis_url
from tests.support.tcp import free_port

MakeApp = Callable[..., Flask]


@pytest.fixture
def make_app(database_url: URL, connection: Connection) -> Iterator[MakeApp]:
    apps: list[Flask] = []

    def make(**settings: object) -> Flask:
        app = create_app(app_config(database_url, **settings))
        app.extensions["database"].bind(connection)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["database"].engine.dispose()


def _from(address: str) -> dict[str, str]:
    return {"REMOTE_ADDR": address}


def test_over_the_limit_is_a_429_problem_with_retry_after(make_app: MakeApp) -> None:
    client = make_app(RATE_LIMIT="3 per minute").test_client()

    statuses = [client.get("/items").status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
    response = client.get("/items")
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 429
    assert 0 < int(response.headers["Retry-After"]) <= 60


def test_writes_have_their_own_tighter_limit(make_app: MakeApp) -> None:
    app = make_app(RATE_LIMIT="100 per minute", RATE_LIMIT_WRITES="2 per minute")
    client, token = app.test_client(), issue_token(app, "w", "write")

    writes = [client.post("/items", json={"title": "t"}, headers=bearer(token)).status_code for _ in range(3)]

    assert writes == [201, 201, 429]
    assert client.get("/items", headers=bearer(token)).status_code == 200


def test_each_token_has_its_own_bucket(make_app: MakeApp) -> None:
    app = make_app(RATE_LIMIT="2 per minute")
    client = app.test_client()
    first, second = issue_token(app, "first", "read"), issue_token(app, "second", "read")

    assert [client.get("/items", headers=bearer(first)).status_code for _ in range(3)] == [200, 200, 429]
    assert client.get("/items", headers=bearer(second)).status_code == 200


def test_anonymous_clients_are_limited_per_address(make_app: MakeApp) -> None:
    client = make_app(RATE_LIMIT="1 per minute").test_client()

    assert client.get("/items", environ_base=_from("192.0.2.1")).status_code == 200
    assert client.get("/items", environ_base=_from("192.0.2.1")).status_code == 429
    assert client.get("/items", environ_base=_from("192.0.2.2")).status_code == 200


def test_a_forged_forwarded_for_header_does_not_escape_the_limit(make_app: MakeApp) -> None:
    client = make_app(RATE_LIMIT="1 per minute", TRUSTED_PROXY_HOPS=0).test_client()

    assert client.get("/items", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
    assert client.get("/items", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 429


def test_behind_one_trusted_proxy_the_forwarded_client_is_the_key(make_app: MakeApp) -> None:
    client = make_app(RATE_LIMIT="1 per minute", TRUSTED_PROXY_HOPS=1).test_client()

    assert client.get("/items", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
    assert client.get("/items", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 429
    assert client.get("/items", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 200


def test_forwarded_for_is_ignored_from_a_peer_that_is_not_the_proxy(make_app: MakeApp) -> None:
    # Another container or pod reaching the port directly cannot pick its own bucket.
    client = make_app(RATE_LIMIT="1 per minute", TRUSTED_PROXY_HOPS=1, FORWARDED_ALLOW_IPS="172.29.240.2").test_client()
    direct = _from("172.29.240.7")

    assert client.get("/items", headers={"X-Forwarded-For": "198.51.100.1"}, environ_base=direct).status_code == 200
    assert client.get("/items", headers={"X-Forwarded-For": "198.51.100.2"}, environ_base=direct).status_code == 429
    proxy = _from("172.29.240.2")
    assert client.get("/items", headers={"X-Forwarded-For": "198.51.100.3"}, environ_base=proxy).status_code == 200
    assert client.get("/items", headers={"X-Forwarded-For": "198.51.100.3"}, environ_base=proxy).status_code == 429


@pytest.mark.parametrize(("allowed", "peer"), [("10.0.0.0/8", "10.1.2.3"), ("*", "192.0.2.9")])
def test_forwarded_allow_ips_takes_networks_and_star(make_app: MakeApp, allowed: str, peer: str) -> None:
    client = make_app(RATE_LIMIT="1 per minute", TRUSTED_PROXY_HOPS=1, FORWARDED_ALLOW_IPS=allowed).test_client()
    for forwarded_for in ("198.51.100.1", "198.51.100.2"):
        # Believed from this peer: each forwarded client has a limit of its own (else the second is a 429).
        response = client.get("/items", headers={"X-Forwarded-For": forwarded_for}, environ_base=_from(peer))
        assert response.status_code == 200


def test_probes_are_never_limited(make_app: MakeApp) -> None:
    client = make_app(RATE_LIMIT="1 per minute").test_client()

    assert {client.get("/health").status_code for _ in range(5)} == {200}
    assert {client.get("/health/ready").status_code for _ in range(5)} == {200}


def test_two_app_instances_share_one_limit_through_redis(make_app: MakeApp) -> None:
    url = _redis_url()
    settings = {"REDIS_URL": url, "RATE_LIMIT": "3 per minute"}
    first, second = make_app(**settings).test_client(), make_app(**settings).test_client()
    # A client address of its own, so parallel or earlier runs do not share the counter.
    me = _from(f"203.0.113.{uuid.uuid4().int % 250 + 1}-{uuid.uuid4().hex[:8]}")

    statuses = [client.get("/items", environ_base=me).status_code for client in (first, second, first, second)]

    assert statuses == [200, 200, 200, 429]


def test_a_limit_with_memory_storage_is_not_shared_between_instances(make_app: MakeApp) -> None:
    first = make_app(RATE_LIMIT="1 per minute").test_client()
    second = make_app(RATE_LIMIT="1 per minute").test_client()

    assert first.get("/items").status_code == 200
    assert second.get("/items").status_code == 200


def test_the_api_keeps_serving_when_redis_is_down(make_app: MakeApp, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", RATE_LIMIT="100 per minute")
    client, token = app.test_client(), issue_token(app, "w", "write")

    with caplog.at_level(logging.WARNING):
        created = client.post("/items", json={"title": "still works"}, headers=bearer(token))
        listed = client.get("/items")

    assert created.status_code == 201
    assert listed.status_code == 200
    assert any("rate limit" in record.getMessage().lower() for record in caplog.records), caplog.text


def test_no_per_request_rate_limit_headers_are_sent(make_app: MakeApp) -> None:
    # They would cost two Redis round trips per request; a 429 carries Retry-After.
    response = make_app(RATE_LIMIT="5 per minute").test_client().get("/items")

    assert not [name for name in response.headers.keys() if name.lower().startswith("x-ratelimit")]  # noqa: SIM118


def test_with_rate_limiting_off_writes_still_work(make_app: MakeApp) -> None:
    app = make_app(RATE_LIMIT_ENABLED="false", RATE_LIMIT_WRITES="1 per minute")
    client, token = app.test_client(), issue_token(app, "w", "write")

    statuses = [client.post("/items", json={"title": "t"}, headers=bearer(token)).status_code for _ in range(3)]

    assert statuses == [201, 201, 201]
