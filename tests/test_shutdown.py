"""SIGTERM: the server drains (readiness 503, requests still served), then stops cleanly."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.support.server import production_server


def test_sigterm_drains_then_exits_cleanly(tmp_path: Path) -> None:
    with production_server(tmp_path, SHUTDOWN_DRAIN_SECONDS="3", WEB_CONCURRENCY="2") as server:
        assert server.get("/health/ready")[0] == 200

        server.process.send_signal(signal.SIGTERM)
        readiness = []
        for _ in range(20):
            status, headers, _ = server.get("/health/ready")
            readiness.append(status)
            if status == 503:
                assert headers["Content-Type"] == "application/problem+json"
                assert headers["Retry-After"] == "1"
                break
            time.sleep(0.05)
        liveness, _, _ = server.get("/health")

        assert readiness[-1] == 503
        assert liveness == 200, "requests are still served while draining"
        assert server.process.wait(timeout=30) == 0
