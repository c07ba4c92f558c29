"""The real production server (``python -m app.server``), any server process, and the app's CLI."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from pathlib import Path

from app.config import variable_names
from tests.support.tcp import free_port

ROOT = Path(__file__).resolve().parents[2]
FLASK_APP = "app.main:create_app"
GRACEFUL_TIMEOUT_SECONDS = 10
DRAIN_SECONDS = 3
# Production keeps rate limits in Redis; the reliability proof does too (limits raised far above its load).
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
START_TIMEOUT_SECONDS = 30.0


def http_get(url: str, timeout: float = 5) -> tuple[int, Message, bytes]:
    """GET without raising on 4xx/5xx: (status, headers (names in any case), body); OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def status(port: int, path: str, timeout: float = 2.0) -> int | None:
    """The status of ``GET path`` on 127.0.0.1:``port``, or None when the server does not answer."""
    try:
        return http_get(f"http://127.0.0.1:{port}{path}", timeout)[0]
    except OSError:
        return None


def server_command(python: str = sys.executable) -> list[str]:
    """The production server exactly as the image starts it (PORT from the environment), on loopback only."""
    return [python, "-m", "app.server", "--host", "127.0.0.1"]


class ServerProcess:
    """A server on 127.0.0.1:``port``, started in its own session and ready when ``ready_path`` answers 200.

    Its output goes to ``<workdir>/<name>.log`` (``<name>-<n>.log`` from the n-th start on); stderr to
    its own file if asked.
    """

    def __init__(
        self,
        command: list[str],
        env: dict[str, str],
        port: int,
        workdir: Path,
        *,
        name: str = "server",
        cwd: Path = ROOT,
        ready_path: str = "/health/ready",
        separate_stderr: bool = False,
    ) -> None:
        self.command, self.env, self.port, self.workdir = command, env, port, workdir
        self.name, self.cwd, self.ready_path, self.separate_stderr = name, cwd, ready_path, separate_stderr
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / (f"{self.name}.log" if self.starts <= 1 else f"{self.name}-{self.starts}.log")

    @property
    def stderr_log(self) -> Path:
        return self.log.with_suffix(".stderr.log") if self.separate_stderr else self.log

    def get(self, path: str, timeout: float = 5) -> tuple[int, Message, bytes]:
        return http_get(self.base_url + path, timeout)

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> float:
        """Start and wait until ready; the monotonic time it first answered ready."""
        self.starts += 1
        with self.log.open("wb") as out, self.stderr_log.open("ab") as err:
            self.process = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdout=out,
                stderr=err if self.separate_stderr else subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.output()}")
            if status(self.port, self.ready_path) == 200:
                return time.monotonic()
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready in {timeout:.0f} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self) -> float:
        """Send SIGTERM (what `docker stop` and Kubernetes send); the monotonic time it was sent."""
        assert self.process is not None
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        return sent

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self, sig: signal.Signals = signal.SIGINT, timeout: float = 10) -> int | None:
        """``sig`` (SIGINT: quick, no drain), then SIGKILL to the server's own process group; its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stray workers, if any
        return self.process.wait()


def production_env(database_url: str, port: int, workdir: Path) -> dict[str, str]:
    """The environment of a production deployment, with limits raised for load tests."""
    (workdir / "metrics").mkdir(parents=True, exist_ok=True)
    # Whatever of the app's settings the caller's shell has set does not leak in.
    names = set(variable_names())
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("FLASK_")}
    env.update(
        FLASK_SKIP_DOTENV="1",
        APP_ENV="production",
        DATABASE_URL=database_url,
        SECRET_KEY=secrets.token_urlsafe(48),
        PORT=str(port),
        WEB_CONCURRENCY="2",
        GRACEFUL_TIMEOUT=str(GRACEFUL_TIMEOUT_SECONDS),
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


def run_flask(
    env: dict[str, str], *args: str, flask: str | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """``flask --app app.main:create_app ARGS`` as an operator runs it (this interpreter's unless ``flask``)."""
    command = [flask] if flask else [sys.executable, "-m", "flask"]
    return subprocess.run(
        [*command, "--app", FLASK_APP, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def flask_cli(env: dict[str, str], *args: str, flask: str | None = None, cwd: Path = ROOT) -> str:
    """Like ``run_flask``, but its stdout, and an error saying why when it fails."""
    result = run_flask(env, *args, flask=flask, cwd=cwd)
    if result.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def migrate_and_issue_token(env: dict[str, str], name: str) -> str:
    flask_cli(env, "db", "upgrade")
    return flask_cli(env, "tokens", "create", "--name", name, "--scope", "write").strip().splitlines()[-1]


@contextmanager
def production_server(tmp_path: Path, **env: str) -> Iterator[ServerProcess]:
    """The production server on a SQLite file and a free loopback port, until /health answers."""
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
    server = ServerProcess(server_command(), environment, port, tmp_path, ready_path="/health")
    server.start(timeout=15)
    try:
        yield server
    finally:
        server.stop(signal.SIGTERM, timeout=60)
