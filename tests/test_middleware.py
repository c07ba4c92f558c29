"""The one-pass middleware: each fixed header once, one request id per request, no cookie session."""

from __future__ import annotations

import pytest
from flask import Flask, Response
from flask import app as flask_app
from sqlalchemy import URL, Connection

from app.main import create_app
from tests.conftest import app_config


def test_a_header_a_view_sets_is_replaced_not_duplicated(app: Flask) -> None:
    app.add_url_rule(
        "/cached", view_func=lambda: Response("{}", headers={"Cache-Control": "max-age=60", "X-Request-ID": "mine"})
    )

    response = app.test_client().get("/cached", headers={"X-Request-ID": "abc-123"})

    assert response.headers.getlist("Cache-Control") == ["no-store"]
    assert response.headers.getlist("X-Request-ID") == ["abc-123"]
    assert response.headers.getlist("X-Frame-Options") == ["DENY"]


def test_the_problem_body_and_the_header_carry_the_same_request_id(app: Flask) -> None:
    response = app.test_client().get("/missing")

    assert response.status_code == 404
    assert response.headers.getlist("X-Request-ID") == [response.get_json()["request_id"]]


def test_the_docs_page_keeps_its_own_policy_and_caching(app: Flask) -> None:
    response = app.test_client().get("/docs/")

    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "no-store" not in response.headers.getlist("Cache-Control")


def test_no_cookie_session_is_opened_or_sent(app: Flask) -> None:
    response = app.test_client().get("/health")

    assert "Set-Cookie" not in response.headers
    assert "Cookie" not in response.headers.get("Vary", "")


def test_behind_a_trusted_proxy_the_minted_request_id_is_still_one(database_url: URL, connection: Connection) -> None:
    app = create_app(app_config(database_url, TRUSTED_PROXY_HOPS=1))
    app.extensions["database"].bind(connection)

    response = app.test_client().get("/missing", headers={"X-Forwarded-For": "198.51.100.9"})

    assert response.headers.getlist("X-Request-ID") == [response.get_json()["request_id"]]
    app.extensions["database"].engine.dispose()


def test_whether_a_view_is_async_is_asked_once_not_per_request(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[object] = []
    real = flask_app.iscoroutinefunction
    monkeypatch.setattr(flask_app, "iscoroutinefunction", lambda func: asked.append(func) or real(func))
    client = app.test_client()

    assert client.get("/items").status_code == 200
    first = len(asked)
    for _ in range(3):
        assert client.get("/items").status_code == 200

    assert first > 0
    assert len(asked) == first


def _wsgi(app: Flask, method: str, path: str) -> tuple[str, object]:
    from werkzeug.test import EnvironBuilder

    statuses: list[str] = []
    body = app.wsgi_app(EnvironBuilder(path=path, method=method).get_environ(), lambda s, *_: statuses.append(s))
    return statuses[0], body


def test_a_body_in_memory_goes_to_the_server_as_one_list_item(app: Flask) -> None:
    """granian sends a list in one call, but pulls an iterator item by item through Python."""
    status, body = _wsgi(app, "GET", "/items")

    assert status.startswith("200")
    assert isinstance(body, list)
    assert len(body) == 1
    assert body[0].startswith(b'{"items":')


def test_a_head_response_and_one_with_close_callbacks_keep_werkzeugs_iterator(app: Flask) -> None:
    closed: list[bool] = []

    @app.get("/with-callback")
    def with_callback() -> Response:
        response = app.response_class(b"{}", mimetype="application/json")
        response.call_on_close(lambda: closed.append(True))
        return response

    head_status, head_body = _wsgi(app, "HEAD", "/health")
    status, body = _wsgi(app, "GET", "/with-callback")
    assert status.startswith("200")

    assert head_status.startswith("200")
    assert list(head_body) == []  # type: ignore[call-overload]
    assert not isinstance(body, list)
    assert closed == []
    body.close()  # type: ignore[attr-defined]  # the server closes the iterator once sent
    assert closed == [True]
