"""Bearer tokens: writes need a write token; reads are public unless READS_REQUIRE_AUTH."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import URL, Connection, select, text

from app import crud
from app.auth import new_token
from app.main import create_app
from app.models import ApiToken
from tests.conftest import app_config
from tests.support.auth import SECRET_START, bearer, issue_token

WRITES = [
    ("POST", "/items", {"title": "new"}, 201),
    ("PATCH", "/items/{id}", {"title": "changed"}, 200),
    ("DELETE", "/items/{id}", None, 204),
]


@pytest.fixture
def tokens(app: Flask) -> dict[str, str]:
    revoked = issue_token(app, "revoked-writer", "write")
    with app.extensions["database"].sessionmaker.begin() as session:
        crud.tokens.revoke_token(session, "revoked-writer")
    return {
        "read": issue_token(app, "reader", "read"),
        "write": issue_token(app, "writer", "write"),
        "revoked": revoked,
        "unknown": new_token().token,
    }


@pytest.fixture
def item_id(client: FlaskClient) -> int:
    item_id: int = client.post("/items", json={"title": "target"}).get_json()["id"]
    return item_id


def _write(client: FlaskClient, method: str, path: str, body: Any, item_id: int, headers: dict[str, str]) -> Any:
    return client.open(path.format(id=item_id), method=method, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body", "success"), WRITES, ids=["create", "update", "delete"])
@pytest.mark.parametrize(
    ("credential", "status", "challenge"),
    [
        (None, 401, 'Bearer realm="items-api"'),
        ("unknown", 401, 'Bearer realm="items-api", error="invalid_token"'),
        ("revoked", 401, 'Bearer realm="items-api", error="invalid_token"'),
        ("malformed", 401, 'Bearer realm="items-api", error="invalid_token"'),
        ("read", 403, 'Bearer realm="items-api", error="insufficient_scope", scope="write"'),
        ("write", None, None),
    ],
    ids=["no-token", "unknown-token", "revoked-token", "malformed-header", "read-token", "write-token"],
)
def test_write_endpoints_need_a_write_token(
    anonymous_client: FlaskClient,
    tokens: dict[str, str],
    item_id: int,
    method: str,
    path: str,
    body: Any,
    success: int,
    credential: str | None,
    status: int | None,
    challenge: str | None,
) -> None:
    if credential is None:
        headers = {}
    elif credential == "malformed":
        headers = {"Authorization": "Basic dXNlcjpwYXNz"}
    else:
        headers = bearer(tokens[credential])

    response = _write(anonymous_client, method, path, body, item_id, headers)

    if status is None:
        assert response.status_code == success
        return
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == challenge
    assert anonymous_client.get(f"/items/{item_id}").status_code == 200, "a refused write changed nothing"


def test_a_token_revoked_after_use_stops_working_at_once(app: Flask, anonymous_client: FlaskClient) -> None:
    token = issue_token(app, "soon-revoked", "write")
    assert anonymous_client.post("/items", json={"title": "a"}, headers=bearer(token)).status_code == 201

    with app.extensions["database"].sessionmaker.begin() as session:
        crud.tokens.revoke_token(session, "soon-revoked")

    assert anonymous_client.post("/items", json={"title": "b"}, headers=bearer(token)).status_code == 401


def test_a_token_with_a_valid_key_id_but_wrong_secret_is_refused(app: Flask, anonymous_client: FlaskClient) -> None:
    token = issue_token(app, "real", "write")
    forged = token[:SECRET_START] + "A" * 43

    response = anonymous_client.post("/items", json={"title": "a"}, headers=bearer(forged))

    assert response.status_code == 401


def test_reads_are_public_by_default(anonymous_client: FlaskClient, item_id: int) -> None:
    assert anonymous_client.get("/items").status_code == 200
    assert anonymous_client.get(f"/items/{item_id}").status_code == 200


@pytest.fixture
def private_app(database_url: URL, connection: Connection) -> Iterator[Flask]:
    app = create_app(app_config(database_url, READS_REQUIRE_AUTH="true"))
    app.extensions["database"].bind(connection)
    yield app
    app.extensions["database"].engine.dispose()


@pytest.mark.parametrize("path", ["/items", "/items/1"])
def test_reads_can_require_a_token(private_app: Flask, path: str) -> None:
    client = private_app.test_client()
    reader = issue_token(private_app, "reader", "read")
    writer = issue_token(private_app, "writer", "write")

    assert client.get(path).status_code == 401
    assert client.get(path, headers=bearer(reader)).status_code in (200, 404)
    assert client.get(path, headers=bearer(writer)).status_code in (200, 404)


def test_probes_and_docs_never_need_a_token(private_app: Flask) -> None:
    client = private_app.test_client()

    for path in ("/health", "/health/ready", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_auth_disabled_lets_writes_through_outside_production(database_url: URL, connection: Connection) -> None:
    app = create_app(app_config(database_url, AUTH_DISABLED="true"))
    app.extensions["database"].bind(connection)

    assert app.test_client().post("/items", json={"title": "open"}).status_code == 201
    app.extensions["database"].engine.dispose()


def test_the_database_never_holds_the_token_itself(app: Flask, connection: Connection) -> None:
    token = issue_token(app, "stored", "write")

    row = connection.execute(select(ApiToken).where(ApiToken.name == "stored")).one()
    dump = " ".join(str(value) for value in row._mapping.values())
    secret = token[SECRET_START:]
    assert secret not in dump
    assert token not in dump
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    everything = connection.execute(text("SELECT * FROM api_tokens")).all()
    assert all(secret not in str(value) for line in everything for value in line)


def test_new_tokens_are_distinct_and_high_entropy() -> None:
    issued = {new_token().token for _ in range(200)}

    assert len(issued) == 200
    assert all(len(token[SECRET_START:]) == 43 for token in issued)  # 32 random bytes


def test_openapi_declares_the_bearer_scheme(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()

    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert spec["paths"]["/items"]["post"]["security"] == [{"bearerAuth": []}]
    assert {"401", "403", "429"} <= spec["paths"]["/items"]["post"]["responses"].keys()
    assert {} in spec["paths"]["/items"]["get"]["security"]
