"""`flask tokens create|list|revoke`."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from app.auth import TOKEN_PATTERN
from tests.support.auth import SECRET_START, bearer


def _run(app: Flask, *args: str) -> tuple[int, str, str]:
    result = app.test_cli_runner().invoke(args=["tokens", *args])
    return result.exit_code, result.stdout, result.stderr


def test_create_prints_a_working_token_once(app: Flask, anonymous_client: FlaskClient) -> None:
    code, out, err = _run(app, "create", "--name", "deploy-bot", "--scope", "write")

    assert code == 0, err
    token = out.strip().splitlines()[-1]
    assert TOKEN_PATTERN.fullmatch(token)
    assert "cannot be shown again" in err
    assert anonymous_client.post("/items", json={"title": "x"}, headers=bearer(token)).status_code == 201


def test_list_shows_names_and_scopes_but_no_secret(app: Flask) -> None:
    _, out, _ = _run(app, "create", "--name", "viewer", "--scope", "read")
    token = out.strip().splitlines()[-1]

    code, listing, _ = _run(app, "list")

    assert code == 0
    assert "viewer\tread" in listing
    assert token not in listing
    assert token[SECRET_START:] not in listing


def test_revoke_stops_the_token_and_marks_it_in_the_list(app: Flask, anonymous_client: FlaskClient) -> None:
    _, out, _ = _run(app, "create", "--name", "old", "--scope", "write")
    token = out.strip().splitlines()[-1]

    code, _, _ = _run(app, "revoke", "old")

    assert code == 0
    assert anonymous_client.post("/items", json={"title": "x"}, headers=bearer(token)).status_code == 401
    assert "old\twrite" in _run(app, "list")[1]
    assert "revoked" in _run(app, "list")[1]


def test_revoking_an_unknown_or_revoked_token_fails(app: Flask) -> None:
    _run(app, "create", "--name", "once", "--scope", "read")
    _run(app, "revoke", "once")

    assert _run(app, "revoke", "once")[0] != 0
    assert _run(app, "revoke", "never-existed")[0] != 0


def test_names_are_unique(app: Flask) -> None:
    assert _run(app, "create", "--name", "dup", "--scope", "read")[0] == 0

    code, _, err = _run(app, "create", "--name", "dup", "--scope", "write")

    assert code != 0
    assert "already exists" in err


def test_bad_names_and_scopes_are_refused(app: Flask) -> None:
    assert _run(app, "create", "--name", "has space", "--scope", "read")[0] != 0
    assert _run(app, "create", "--name", "x" * 101, "--scope", "read")[0] != 0
    assert _run(app, "create", "--name", "ok", "--scope", "admin")[0] != 0


def test_reserved_and_placeholder_names_are_refused(app: Flask) -> None:
    # "-" is the principal of requests without a token (idempotency keys, auth disabled).
    for name in ("-", "--", ".", "_", "-.-"):
        code, _, err = _run(app, "create", "--name", name, "--scope", "write")
        assert code != 0, name
        assert "Created" not in err
    assert _run(app, "create", "--name", "a-b.c_1", "--scope", "read")[0] == 0
