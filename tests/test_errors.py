"""Every error is RFC 9457 application/problem+json, and bad input is always a 4xx."""

from __future__ import annotations

import io
import json

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import EnvironBuilder, run_wsgi_app

JSON = "application/json"
PROBLEM_FIELDS = {"type", "title", "status", "detail", "request_id"}


def _assert_problem(response: object, status: int) -> dict[str, object]:
    assert response.status_code == status  # type: ignore[attr-defined]
    assert response.mimetype == "application/problem+json"  # type: ignore[attr-defined]
    body: dict[str, object] = response.get_json()  # type: ignore[attr-defined]
    assert set(body) >= PROBLEM_FIELDS
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["request_id"] == response.headers["X-Request-ID"]  # type: ignore[attr-defined]
    return body


def test_unknown_route_is_a_404_problem(client: FlaskClient) -> None:
    body = _assert_problem(client.get("/no/such/route"), 404)

    assert body["title"] == "Not Found"


def test_wrong_method_is_a_405_problem_with_an_allow_header(client: FlaskClient) -> None:
    response = client.put("/items")

    _assert_problem(response, 405)
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_wrong_method_on_an_item_lists_its_methods(client: FlaskClient) -> None:
    response = client.post("/items/1", json={})

    _assert_problem(response, 405)
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "PATCH", "DELETE"}


def test_malformed_json_is_a_400_problem(client: FlaskClient) -> None:
    _assert_problem(client.post("/items", data='{"title": ', content_type="application/json"), 400)


@pytest.mark.parametrize("body", ["[]", '"title"', "42", "null", "true"])
def test_json_that_is_not_an_object_is_a_422_problem(client: FlaskClient, body: str) -> None:
    problem = _assert_problem(client.post("/items", data=body, content_type="application/json"), 422)

    assert problem["errors"] == [{"loc": ["body"], "msg": "must be a JSON object"}]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_a_body_that_is_not_json_is_a_415_problem(client: FlaskClient, content_type: str | None) -> None:
    response = client.post("/items", data='{"title": "t"}', content_type=content_type)

    _assert_problem(response, 415)


def test_patch_with_a_non_json_body_is_a_415_problem(client: FlaskClient) -> None:
    item = client.post("/items", json={"title": "t"}).get_json()

    _assert_problem(client.patch(f"/items/{item['id']}", data="title=x", content_type="text/plain"), 415)


def test_json_with_a_charset_parameter_is_accepted(client: FlaskClient) -> None:
    response = client.post("/items", data='{"title": "t"}', content_type="application/json; charset=utf-8")

    assert response.status_code == 201


def test_a_body_over_the_limit_is_a_413_problem(client: FlaskClient) -> None:
    body = '{"title": "t", "description": "' + "x" * (1024 * 1024) + '"}'

    _assert_problem(client.post("/items", data=body, content_type="application/json"), 413)


def test_a_chunked_body_over_the_limit_is_a_413_problem(app: Flask, write_token: str) -> None:
    body = b'{"title": "t", "description": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    environ = EnvironBuilder(
        path="/items",
        method="POST",
        input_stream=io.BytesIO(body),
        content_type=JSON,
        headers={"Authorization": f"Bearer {write_token}"},
    ).get_environ()
    # As a server passes a chunked request: no length, a stream that ends by itself.
    del environ["CONTENT_LENGTH"]
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input_terminated"] = True

    chunks, status, headers = run_wsgi_app(app, environ, buffered=True)

    assert status.startswith("413 ")
    assert headers["Content-Type"] == "application/problem+json"
    assert json.loads(b"".join(chunks))["status"] == 413


def test_error_responses_never_contain_a_traceback_or_sql(client: FlaskClient) -> None:
    responses = [
        client.post("/items", data="{", content_type="application/json"),
        client.get("/items?cursor=%27%3B%20DROP%20TABLE%20items%3B--"),
        client.get("/items/1%27%20OR%201=1"),
    ]

    for response in responses:
        text = response.get_data(as_text=True)
        assert 400 <= response.status_code < 500
        assert "Traceback" not in text
        assert "SELECT" not in text.upper()
        assert "sqlalchemy" not in text.lower()
