"""The real production server (gunicorn with gunicorn.conf.py) and the app's CLI, as subprocesses."""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GRACEFUL_TIMEOUT_SECONDS = 10
DRAIN_SECONDS = 3
# Production keeps rate limits in Redis; the suite does too (limits raised far above its load).
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
START_TIMEOUT_SECONDS = 30


def production_env(database_url: str, port: int, workdir: Path) -> dict[str, str]:
    """The environment of a production deployment, with limits raised for load tests."""
    (workdir / "metrics").mkdir(parents=True, exist_ok=True)
    prefixes = ("DB_", "GUNICORN_", "RATE_LIMIT", "FLASK_", "SHUTDOWN_", "REDIS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        APP_ENV="production",
        DATABASE_URL=database_url,
        SECRET_KEY=secrets.token_urlsafe(48),
        PORT=str(port),
        WEB_CONCURRENCY="2",
        GUNICORN_GRACEFUL_TIMEOUT=str(GRACEFUL_TIMEOUT_SECONDS),
        SHUTDOWN_DRAIN_SECONDS=str(DRAIN_SECONDS),
        DB_CONNECT_TIMEOUT="2",
        DB_POOL_TIMEOUT="2",
        DB_STATEMENT_TIMEOUT_MS="5000",
        RATE_LIMIT="1000000 per minute",
        RATE_LIMIT_WRITES="1000000 per minute",
        LOG_LEVEL="INFO",
        LOG_FORMAT="json",
        PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"),
        REDIS_URL=os.environ.get("RELIABILITY_REDIS_URL", DEFAULT_REDIS_URL),
    )
    return env


def flask_cli(env: dict[str, str], *args: str) -> str:
    """Run ``flask --app app.main:create_app ARGS`` as an operator would; its stdout."""
    command = [sys.executable, "-m", "flask", "--app", "app.main:create_app", *args]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def migrate_and_issue_token(env: dict[str, str], name: str) -> str:
    flask_cli(env, "db", "upgrade")
    return flask_cli(env, "tokens", "create", "--name", name, "--scope", "write").strip().splitlines()[-1]


def get(port: int, path: str, timeout: float = 2.0) -> int | None:
    """The status of ``GET path``, or None when the server does not answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


class Server:
    """``gunicorn --config gunicorn.conf.py "app.main:create_app()"`` on a loopback port."""

    def __init__(self, env: dict[str, str], port: int, workdir: Path) -> None:
        self.env = env
        self.port = port
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.workdir / f"gunicorn-{self.starts}.log"

    def start(self) -> float:
        """Start and wait until ready; the monotonic time it first answered ready."""
        self.starts += 1
        command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py"]
        command += ["--bind", f"127.0.0.1:{self.port}", "app.main:create_app()"]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log.read_text()}")
            if get(self.port, "/health/ready") == 200:
                return time.monotonic()
            time.sleep(0.02)
        raise RuntimeError(f"gunicorn did not become ready in {START_TIMEOUT_SECONDS}s:\n{self.log.read_text()}")

    def terminate(self) -> float:
        """Send SIGTERM (what `docker stop` and Kubernetes send); the monotonic time it was sent."""
        assert self.process is not None
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        return sent

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """Quick shutdown (SIGINT: no drain), then SIGKILL to the server's own process group."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
