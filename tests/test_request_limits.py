"""Bounded request lines, header blocks and query strings; 4xx bodies that do not grow with the input."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import EnvironBuilder, run_wsgi_app

from app.errors import MAX_REPORTED_ERRORS
from tests.support.server import ServerProcess, production_server

PROBLEM = "application/problem+json"
# 1 MB of repeated parameters, each name twice: unbounded, a 3.5 MB 422 after 200+ ms.
ONE_MB_QUERY = "&".join(f"p{i}=1&p{i}=2" for i in range(60_000))[:1_000_000]


def test_a_one_megabyte_repeated_parameter_query_gets_a_small_414_not_a_parse(app: Flask) -> None:
    # The environ is built by hand: the test client's own URL handling of 1 MiB is slow.
    environ = EnvironBuilder(path="/items").get_environ()
    environ["QUERY_STRING"] = ONE_MB_QUERY
    body, status, headers = run_wsgi_app(app, environ, buffered=True)
    data = b"".join(body)
    # Parsed, the query would be a 3.5 MB 422 listing every repeated parameter.
    assert status.startswith("414")
    assert headers["Content-Type"] == PROBLEM
    assert len(data) < 1024


def test_a_query_string_at_the_limit_is_parsed_and_one_byte_more_is_414(app: Flask, client: FlaskClient) -> None:
    limit = app.config["MAX_QUERY_STRING_BYTES"]
    base = "limit=5&cursor="
    at_limit = base + "x" * (limit - len(base))
    assert client.get(f"/items?{at_limit}").status_code == 422  # a bad cursor, so parsed
    assert client.get(f"/items?{at_limit}x").status_code == 414


def test_a_422_for_many_repeated_parameters_reports_a_handful_of_errors(client: FlaskClient) -> None:
    query = "&".join(f"p{i}=1&p{i}=2" for i in range(300))[:4000].rsplit("&", 1)[0]
    response = client.get(f"/items?{query}")
    assert response.status_code == 422
    body = orjson.loads(response.data)
    assert len(body["errors"]) == MAX_REPORTED_ERRORS
    assert "errors)" in body["detail"]
    assert len(response.data) < 2048


def test_a_422_for_long_parameter_names_stays_small(client: FlaskClient) -> None:
    name = "n" * 1000
    response = client.get(f"/items?{name}=1&{name}=2&{name}x=1&{name}x=2")
    assert response.status_code == 422
    assert len(response.data) < 2048


def test_a_422_for_a_body_of_many_unknown_fields_stays_small(client: FlaskClient) -> None:
    body = orjson.dumps({"title": "a", **{f"field{i}": i for i in range(20_000)}})
    response = client.post("/items", data=body, content_type="application/json")
    assert response.status_code == 422
    assert len(orjson.loads(response.data)["errors"]) == MAX_REPORTED_ERRORS
    assert len(response.data) < 2048


def test_openapi_lists_the_414_as_a_problem(client: FlaskClient) -> None:
    spec = orjson.loads(client.get("/openapi.json").data)
    assert PROBLEM in spec["paths"]["/items"]["get"]["responses"]["414"]["content"]


# --- against the real production server ---------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with production_server(tmp_path_factory.mktemp("server")) as running:
        yield running


def _worker_pid(server: ServerProcess) -> int:
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _send_raw(server: ServerProcess, payload: bytes, timeout: float = 30) -> tuple[bytes, float]:
    """Send ``payload`` while reading the answer; return the answer's first bytes and the time to it."""
    port = int(server.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:

        def send() -> None:
            # The server may answer and close before reading it all: that is the point.
            with contextlib.suppress(OSError):
                sock.sendall(payload)

        sender = threading.Thread(target=send, daemon=True)
        started = time.perf_counter()
        sender.start()
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except ConnectionResetError:
            pass
        elapsed = time.perf_counter() - started
        with contextlib.suppress(OSError):  # already closed by the server
            sock.shutdown(socket.SHUT_RDWR)
        sender.join(timeout)
        return answer, elapsed


def test_the_server_refuses_a_multi_megabyte_request_line_without_reading_it_into_memory(server: ServerProcess) -> None:
    worker = _worker_pid(server)
    before = _peak_rss_kib(worker)
    line = b"GET /items?" + b"limit=1&" * (8 * 1024 * 1024 // 8) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    answer, elapsed = _send_raw(server, line)
    grown_kib = _peak_rss_kib(worker) - before
    print(f"8 MiB request line: {answer[:12]!r} after {elapsed:.3f} s; worker peak RSS +{grown_kib} KiB")
    # The request line and headers must fit in REQUEST_HEAD_LIMIT (64 KiB) together.
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert grown_kib < 4096  # unbounded, an 8 MiB line cost a worker about 40 MB (and seconds)
    assert server.get("/health")[0] == 200


def test_an_over_long_query_below_the_servers_limit_gets_the_apps_problem(server: ServerProcess) -> None:
    status, headers, body = server.get("/items?cursor=" + "x" * 6000)
    assert status == 414
    assert headers["Content-Type"] == PROBLEM
    assert orjson.loads(body)["status"] == 414


# At most 100 header lines (granian's HTTP parser, hyper); a head past REQUEST_HEAD_LIMIT
# (64 KiB) is refused once the read that crossed it is in (reads grow to 64 KiB): so a few
# hundred KiB at most, whatever the client sends.
@pytest.mark.parametrize(("count", "size"), [(120, 10), (4, 60_000)], ids=["too-many-fields", "too-large-block"])
def test_the_server_bounds_the_header_block(server: ServerProcess, count: int, size: int) -> None:
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * size) for i in range(count))
    answer, _ = _send_raw(server, b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), answer[:200]
