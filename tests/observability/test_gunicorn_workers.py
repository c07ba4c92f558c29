"""The real production server (gunicorn, 2 workers): metrics add up across workers, logs are JSON.

One server for the module, on a throwaway PostgreSQL database and a loopback port.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app import __version__
from app.config import load_settings
from app.db import build_engine
from app.migrate import upgrade
from tests.conftest import app_config
from tests.observability.support import (
    PROMETHEUS_SERIES,
    alert_queries,
    dashboard_queries,
    metric_names,
    sample_names,
    value,
)
from tests.support.databases import Backend, url_string

pytestmark = [pytest.mark.postgresql_only, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
GIT_SHA = "1a2b3c4d5e6f"
REQUESTS = 60
START_TIMEOUT = 30.0


def _loopback_port() -> int:
    """A free port below the ephemeral range, so no outgoing connection can be holding it."""
    for _ in range(200):
        port = random.randrange(20_000, 32_768)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below 32768")


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    stdout: Path
    stderr: Path
    metrics_dir: Path

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=10) as response:  # noqa: S310 (loopback)
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def scrape(self) -> str:
        status, body = self.get("/metrics")
        assert status == 200
        return body

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.read_text().splitlines() if line]

    def worker_pids(self) -> set[int]:
        """Workers booted and not (yet) reported as exited."""
        booted = {line["pid"] for line in self.log_lines() if str(line["event"]).startswith("Booting worker")}
        exited = {line["pid"] for line in self.log_lines() if str(line["event"]).startswith("Worker exiting")}
        return booted - exited

    def alive(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited early:\n{self.stdout.read_text()}\n{self.stderr.read_text()}")
        return True


def _leave_stale_metrics(metrics_dir: Path) -> None:
    """Counter files of an earlier run, as a crashed container would leave them."""
    code = (
        "from prometheus_client import Counter\n"
        "Counter('http_requests', 'stale', ('method', 'route', 'status')).labels('GET', '/items', '200').inc(1000)\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    assert list(metrics_dir.glob("counter_*.db"))


@pytest.fixture(scope="module")
def server(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("gunicorn")
    url = backend.create_database()
    engine = build_engine(load_settings(app_config(url), instance_path=workdir))
    upgrade(engine)
    engine.dispose()
    metrics_dir = workdir / "metrics"
    metrics_dir.mkdir()
    _leave_stale_metrics(metrics_dir)
    port = _loopback_port()
    env = {
        **os.environ,
        "APP_ENV": "production",
        "DATABASE_URL": url_string(url),
        "SECRET_KEY": "s" * 48,
        "WEB_CONCURRENCY": "2",
        "GIT_SHA": GIT_SHA,
        "LOG_LEVEL": "INFO",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        # Not under test here, and production would otherwise require Redis.
        "RATE_LIMIT_ENABLED": "false",
    }
    env.pop("LOG_FORMAT", None)
    stdout, stderr = workdir / "stdout.log", workdir / "stderr.log"
    command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"]
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen([*command, "app.main:create_app()"], cwd=ROOT, env=env, stdout=out, stderr=err)
    running = Server(process, f"http://127.0.0.1:{port}", stdout, stderr, metrics_dir)
    try:
        _wait_for(lambda: running.alive() and len(running.worker_pids()) == 2, "two workers to boot")
        _wait_for(lambda: running.get("/health")[0] == 200, "the server to answer")
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            backend.drop_database(url)
    assert process.returncode == 0, stderr.read_text()


def test_the_request_counter_is_exact_across_two_workers(server: Server) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda _: server.get("/items")[0], range(REQUESTS)))

    assert statuses == [200] * REQUESTS
    # Every scrape, whichever worker answers it, sees all workers' counts.
    for _ in range(6):
        scrape = server.scrape()
        assert value(scrape, "http_requests_total", method="GET", route="/items", status="200") == REQUESTS
        assert value(scrape, "http_request_duration_seconds_count", method="GET", route="/items") == REQUESTS
    served_by = {line["pid"] for line in server.log_lines() if line.get("route") == "/items"}
    assert len(served_by) == 2, "both workers must have served requests for the sum to mean anything"


def test_scrape_time_metrics_come_from_the_answering_worker(server: Server) -> None:
    scrape = server.scrape()

    assert value(scrape, "db_ready") == 1
    assert value(scrape, "items_api_build_info", version=__version__, git_sha=GIT_SHA) == 1


def test_a_dead_worker_keeps_its_counts_but_leaves_the_live_gauges(server: Server) -> None:
    for _ in range(10):
        server.get("/items")
    before = value(server.scrape(), "http_requests_total", method="GET", route="/items", status="200")
    victim = next(pid for pid in server.worker_pids() if (server.metrics_dir / f"gauge_livesum_{pid}.db").exists())

    os.kill(victim, signal.SIGKILL)
    _wait_for(lambda: not (server.metrics_dir / f"gauge_livesum_{victim}.db").exists(), "child_exit to run")
    _wait_for(
        lambda: len({line["pid"] for line in server.log_lines() if "Booting worker" in line["event"]} - {victim}) >= 2,
        "a replacement worker",
    )

    scrape = server.scrape()
    assert value(scrape, "http_requests_total", method="GET", route="/items", status="200") == before
    assert value(scrape, "db_pool_connections_in_use") == 0


def test_every_line_the_server_writes_is_one_json_object(server: Server) -> None:
    lines = server.log_lines()

    assert {line["logger"] for line in lines} >= {"gunicorn.error", "app.access"}
    assert all({"timestamp", "level", "logger", "event"} <= set(line) for line in lines)
    assert server.stderr.read_text() == ""
    items_lines = [line for line in lines if line["logger"] == "app.access" and line["route"] == "/items"]
    counted = value(server.scrape(), "http_requests_total", method="GET", route="/items", status="200")
    assert len(items_lines) == counted > 0, "one access line per request"


def test_dashboard_and_alerts_query_only_metrics_the_app_exports(server: Server) -> None:
    exported = sample_names(server.scrape()) | PROMETHEUS_SERIES
    queries = dashboard_queries() + alert_queries()

    used = set().union(*(metric_names(query) for query in queries))

    assert used - exported == set()
    assert {"http_requests_total", "http_request_duration_seconds_bucket", "db_pool_size", "db_ready"} <= used
