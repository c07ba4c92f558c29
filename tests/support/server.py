"""Run the real production server (gunicorn with gunicorn.conf.py) for a test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.tcp import free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]

    def get(self, path: str, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
        """GET without raising on 4xx/5xx: (status, headers, body)."""
        try:
            with urllib.request.urlopen(f"{self.base_url}{path}", timeout=timeout) as response:  # noqa: S310
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()


@contextmanager
def gunicorn(tmp_path: Path, **env: str) -> Iterator[Server]:
    """Start gunicorn on a free loopback port and wait until /health answers."""
    port = free_port()
    environment = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": f"sqlite:///{tmp_path}/items.db",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "app.main:create_app()"],
        cwd=PROJECT_ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Server(f"http://127.0.0.1:{port}", process)
    try:
        for _ in range(150):
            try:
                if server.get("/health", timeout=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("gunicorn did not answer /health within 15 s")
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=60)
