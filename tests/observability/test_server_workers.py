"""The real production server (app/server.py, 2 workers): metrics add up across workers, logs are JSON.

One server for the module, on a throwaway PostgreSQL database and a loopback port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from app import __version__
from app.config import load_settings
from app.engine import build_engine
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
from tests.support.server import ServerProcess, server_command
from tests.support.tcp import free_port

pytestmark = [pytest.mark.postgresql_only, pytest.mark.timeout(120)]

GIT_SHA = "1a2b3c4d5e6f"
REQUESTS = 60
START_TIMEOUT = 30.0


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Server(ServerProcess):
    """The production server with its JSON log lines (stdout) apart from stderr."""

    @property
    def metrics_dir(self) -> Path:
        return Path(self.env["PROMETHEUS_MULTIPROC_DIR"])

    def fetch(self, path: str) -> tuple[int, str]:
        status, _, body = self.get(path, timeout=10)
        return status, body.decode()

    def scrape(self) -> str:
        status, body = self.fetch("/metrics")
        assert status == 200
        return body

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def worker_pids(self) -> set[int]:
        """The server process's children: its workers."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        return {int(pid) for pid in children.split()}


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
    workdir = tmp_path_factory.mktemp("server")
    url = backend.create_database()
    engine = build_engine(load_settings(app_config(url), instance_path=workdir))
    upgrade(engine)
    engine.dispose()
    metrics_dir = workdir / "metrics"
    metrics_dir.mkdir()
    _leave_stale_metrics(metrics_dir)
    port = free_port()
    env = {
        **os.environ,
        "APP_ENV": "production",
        "DATABASE_URL": url_string(url),
        "SECRET_KEY": "s" * 48,
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "WORKER_TIMEOUT": "3",
        "GIT_SHA": GIT_SHA,
        "LOG_LEVEL": "INFO",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        # Not under test here, and production would otherwise require Redis.
        "RATE_LIMIT_ENABLED": "false",
    }
    env.pop("LOG_FORMAT", None)
    running = Server(server_command(), env, port, workdir, ready_path="/health", separate_stderr=True)
    try:
        running.start(timeout=START_TIMEOUT)
        _wait_for(lambda: len(running.worker_pids()) == 2, "two workers to boot")
        yield running
        assert running.stop(signal.SIGTERM, timeout=30) == 0, running.stderr_log.read_text()
    finally:
        running.stop()
        backend.drop_database(url)


def test_the_request_counter_is_exact_across_two_workers(server: Server) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda _: server.fetch("/items")[0], range(REQUESTS)))

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
        server.fetch("/items")
    before = value(server.scrape(), "http_requests_total", method="GET", route="/items", status="200")
    victim = next(pid for pid in server.worker_pids() if (server.metrics_dir / f"gauge_livesum_{pid}.db").exists())

    os.kill(victim, signal.SIGKILL)
    _wait_for(lambda: not (server.metrics_dir / f"gauge_livesum_{victim}.db").exists(), "the watchdog to drop it")
    _wait_for(lambda: len(server.worker_pids() - {victim}) == 2, "a replacement worker")

    scrape = server.scrape()
    assert value(scrape, "http_requests_total", method="GET", route="/items", status="200") == before
    assert value(scrape, "db_pool_connections_in_use") == 0


def test_a_stuck_worker_is_killed_and_replaced(server: Server) -> None:
    """Stopped outright (SIGSTOP: no request, no heartbeat moves): killed after WORKER_TIMEOUT, replaced."""
    victim = min(server.worker_pids())

    os.kill(victim, signal.SIGSTOP)
    _wait_for(lambda: victim not in server.worker_pids(), "the watchdog to kill it", timeout=15)
    _wait_for(lambda: len(server.worker_pids()) == 2, "a replacement worker")

    assert all(server.fetch("/health")[0] == 200 for _ in range(10))
    assert any(
        line["logger"] == "app.watchdog" and f"worker {victim} hung" in line["event"] for line in server.log_lines()
    )


def test_every_line_the_server_writes_is_one_json_object(server: Server) -> None:
    lines = server.log_lines()

    assert {line["logger"] for line in lines} >= {"_granian", "app.access"}
    assert all({"timestamp", "level", "logger", "event"} <= set(line) for line in lines)
    assert server.stderr_log.read_text() == ""
    items_lines = [line for line in lines if line["logger"] == "app.access" and line["route"] == "/items"]
    counted = value(server.scrape(), "http_requests_total", method="GET", route="/items", status="200")
    assert len(items_lines) == counted > 0, "one access line per request"


def test_dashboard_and_alerts_query_only_metrics_the_app_exports(server: Server) -> None:
    exported = sample_names(server.scrape()) | PROMETHEUS_SERIES
    queries = dashboard_queries() + alert_queries()

    used = set().union(*(metric_names(query) for query in queries))

    assert used - exported == set()
    assert {"http_requests_total", "http_request_duration_seconds_bucket", "db_pool_size", "db_ready"} <= used
