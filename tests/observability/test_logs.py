"""Logs: one JSON object per line, one access line per request, errors with their request id."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.main import create_app

SECRET_BODY = "body-marker-31d8e0"


def _json_lines(output: str) -> list[dict[str, Any]]:
    """Every line must be one JSON object; returns them all."""
    records = [json.loads(line) for line in output.splitlines() if line]
    assert all(isinstance(record, dict) for record in records)
    return records


def _access_lines(output: str) -> list[dict[str, Any]]:
    return [record for record in _json_lines(output) if record.get("event") == "request"]


def _app(tmp_path: Path, **config: object) -> Flask:
    return create_app({"APP_ENV": "test", "DATABASE_URL": f"sqlite:///{tmp_path}/items.db", **config})


def test_each_request_logs_one_json_access_line_with_the_request_fields(
    client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    response = client.post("/items", json={"title": "t"}, headers={"User-Agent": "probe/1.0"})

    [line] = _access_lines(capsys.readouterr().out)
    assert set(line) == {
        "timestamp", "level", "logger", "pid", "event", "request_id", "method",
        "route", "status", "duration_ms", "client", "user_agent", "principal",
    }  # fmt: skip
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert (line["level"], line["method"], line["route"], line["status"]) == ("INFO", "POST", "/items", 201)
    assert line["principal"] == "test-writer"
    assert line["client"] == "127.0.0.1"
    assert line["user_agent"] == "probe/1.0"
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] >= 0
    assert line["timestamp"].endswith("Z")


def test_logs_never_contain_tokens_or_bodies(
    client: FlaskClient,
    anonymous_client: FlaskClient,
    write_token: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    forged = write_token[:-4] + "AAAA"
    client.post("/items", json={"title": SECRET_BODY})
    client.post("/items", data="not json " + SECRET_BODY, content_type="application/json")
    anonymous_client.post("/items", json={"title": SECRET_BODY}, headers={"Authorization": f"Bearer {forged}"})

    output = capsys.readouterr().out
    assert [line["status"] for line in _access_lines(output)] == [201, 400, 401]
    for text in (output, caplog.text):
        assert write_token not in text
        assert forged not in text
        assert SECRET_BODY not in text


def test_the_access_record_names_the_recorder_as_its_source_and_carries_the_pid(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = _app(tmp_path)
    caplog.set_level(logging.INFO)

    app.test_client().get("/health")

    [record] = [r for r in caplog.records if r.name == "app.access"]
    assert (Path(record.pathname).name, record.module, record.funcName) == ("access.py", "access", "record")
    assert record.lineno > 0
    assert record.process == os.getpid()
    # None of the access fields overwrote an attribute of the record's own.
    assert (record.msg, record.args, record.levelno, record.levelname) == ("request", (), logging.INFO, "INFO")
    assert record.exc_info is None
    assert record.stack_info is None
    assert 0 < time.time() - record.created < 60
    fields = {"request_id", "method", "route", "status", "duration_ms", "client", "user_agent"}
    assert fields <= set(vars(record))
    assert not fields & set(vars(logging.makeLogRecord({})))


def test_the_access_line_names_the_route_template_not_the_path(
    client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    client.get("/items/424242")
    client.get("/no/such/thing/424242")

    routes = [line["route"] for line in _access_lines(capsys.readouterr().out)]
    assert routes == ["/items/<item_id:item_id>", "<unmatched>"]


def test_the_access_line_names_the_principal_only_when_authenticated(
    client: FlaskClient, anonymous_client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    client.get("/items")
    anonymous_client.get("/items")

    authenticated, anonymous = _access_lines(capsys.readouterr().out)
    assert authenticated["principal"] == "test-writer"
    assert "principal" not in anonymous


def test_an_unhandled_error_logs_one_line_with_the_traceback_and_the_request_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _app(tmp_path)

    @app.get("/boom")
    def _boom() -> str:
        raise RuntimeError("kaboom in the view")

    response = app.test_client().get("/boom")

    assert response.status_code == 500
    body = response.get_json()
    assert "kaboom" not in response.get_data(as_text=True)
    [error] = [line for line in _json_lines(capsys.readouterr().out) if line["level"] == "ERROR"]
    assert error["event"] == "unhandled error"
    assert error["request_id"] == body["request_id"] == response.headers["X-Request-ID"]
    assert error["exception"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: kaboom in the view" in error["exception"]


def test_any_log_call_during_a_request_carries_its_request_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _app(tmp_path)

    @app.get("/chatty")
    def _chatty() -> str:
        logging.getLogger("app.somewhere").warning("something odd")
        return "ok"

    response = app.test_client().get("/chatty", headers={"X-Request-ID": "trace-me-42"})

    [line] = [line for line in _json_lines(capsys.readouterr().out) if line["event"] == "something odd"]
    assert line["request_id"] == response.headers["X-Request-ID"] == "trace-me-42"


def test_local_environment_logs_readable_console_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = create_app({"APP_ENV": "local", "DATABASE_URL": f"sqlite:///{tmp_path}/items.db"})

    app.test_client().get("/health")

    [line] = [line for line in capsys.readouterr().out.splitlines() if "app.access" in line]
    assert not line.startswith("{")
    assert " INFO    app.access: request " in line
    assert "route=/health" in line
    assert "status=200" in line


def test_log_format_can_be_chosen_explicitly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = create_app({"APP_ENV": "local", "LOG_FORMAT": "json", "DATABASE_URL": f"sqlite:///{tmp_path}/items.db"})

    app.test_client().get("/health")

    assert [line["route"] for line in _access_lines(capsys.readouterr().out)] == ["/health"]


def test_log_level_comes_from_LOG_LEVEL(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = _app(tmp_path, LOG_LEVEL="WARNING")

    app.test_client().get("/health")

    assert _access_lines(capsys.readouterr().out) == []


def test_building_apps_again_replaces_the_handler_instead_of_adding_one(tmp_path: Path) -> None:
    _app(tmp_path)
    _app(tmp_path)

    ours = [h for h in logging.getLogger().handlers if getattr(h, "_items_api_handler", False)]
    assert len(ours) == 1


@pytest.mark.parametrize(
    ("hops", "expected"),
    [(0, "10.0.0.2"), (1, "198.51.100.23"), (2, "203.0.113.7")],
    ids=["no-proxy-trusted", "one-hop-caddy", "two-hops"],
)
def test_the_client_address_believes_only_the_trusted_proxy_hops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, hops: int, expected: str
) -> None:
    app = _app(tmp_path, TRUSTED_PROXY_HOPS=hops, FORWARDED_ALLOW_IPS="10.0.0.2")
    caplog.set_level(logging.INFO)

    app.test_client().get(
        "/health",
        headers={"X-Forwarded-For": "203.0.113.7, 198.51.100.23"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )

    [record] = [r for r in caplog.records if r.name == "app.access"]
    assert record.client == expected  # type: ignore[attr-defined]


def test_forwarded_for_from_a_peer_that_is_not_the_proxy_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = _app(tmp_path, TRUSTED_PROXY_HOPS=1, FORWARDED_ALLOW_IPS="10.0.0.2")
    caplog.set_level(logging.INFO)

    app.test_client().get(
        "/health", headers={"X-Forwarded-For": "203.0.113.7"}, environ_base={"REMOTE_ADDR": "10.0.0.9"}
    )

    [record] = [r for r in caplog.records if r.name == "app.access"]
    assert record.client == "10.0.0.9"  # type: ignore[attr-defined]
