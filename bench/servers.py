"""Start, probe, measure and stop the two servers under test (the API and the ceiling)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.server import ServerProcess, server_command

REDIS_ADDRESS = ("127.0.0.1", 6379)
# A limit the load never reaches: the limiter's work (a Redis round trip) is measured, not its 429s.
UNREACHED_RATE_LIMIT = "1000000000 per hour"
STOP_TIMEOUT_SECONDS = 15.0


def _answers(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=1):
            return True
    except OSError:
        return False


def rate_limit_env() -> dict[str, str]:
    """Rate limiting on, with Redis as in production, when a local Redis answers; else off."""
    if _answers(REDIS_ADDRESS):
        host, port = REDIS_ADDRESS
        return {
            "REDIS_URL": f"redis://{host}:{port}/0",
            "RATE_LIMIT": UNREACHED_RATE_LIMIT,
            "RATE_LIMIT_WRITES": UNREACHED_RATE_LIMIT,
        }
    return {"RATE_LIMIT_ENABLED": "false"}


@dataclass
class ServerSpec:
    """One server under test: which program, how many workers and threads, its command."""

    role: str  # "api" or "ceiling"
    server: str  # "gunicorn" or "granian"
    workers: int
    threads: int
    port: int
    command: list[str]
    env: dict[str, str]
    cwd: Path
    setting_env: dict[str, str] = field(default_factory=dict)  # what the report shows

    def report(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "workers": self.workers,
            "threads": self.threads,
            "describe": self.describe(),
            "env": self.setting_env,
            "command": self.command,
        }

    def describe(self) -> str:
        if self.role == "api":
            return f"app/server.py (granian WSGI), {self.workers} workers x {self.threads} threads"
        if self.server == "granian":
            return f"granian WSGI, {self.workers} workers x {self.threads} blocking threads"
        kind = "sync" if self.threads == 1 else "gthread"
        return f"gunicorn {kind}, {self.workers} workers x {self.threads} threads"


def api_spec(
    server: str,
    workers: int,
    threads: int,
    port: int,
    *,
    app_root: Path,
    app_venv: Path,
    bench_venv: Path,
    database_url: str,
    extra_env: dict[str, str],
) -> ServerSpec:
    """The API with its production configuration: APP_ENV=production, the production server (app/server.py)."""
    if server != "granian":
        raise ValueError(f"the API runs on its production server (granian, app/server.py), not {server}")
    settings = {
        "APP_ENV": "production",
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "SERVER_THREADS": str(threads),
        **rate_limit_env(),
        **extra_env,
    }
    env = {**os.environ, **settings, "DATABASE_URL": database_url, "SECRET_KEY": secrets.token_urlsafe(48)}
    command = server_command(python=str(app_venv / "bin" / "python"))
    return ServerSpec("api", server, workers, threads, port, command, env, app_root, settings)


def ceiling_spec(
    server: str, workers: int, threads: int, port: int, *, bench_root: Path, bench_venv: Path, conninfo: str
) -> ServerSpec:
    settings = {"CEILING_POOL_SIZE": str(threads)}
    env = {**os.environ, **settings, "CEILING_DATABASE_URL": conninfo}
    if server == "gunicorn":
        command = [str(bench_venv / "bin" / "gunicorn"), "--workers", str(workers), "--threads", str(threads)]
        command += [
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-tmp-dir",
            "/dev/shm",  # noqa: S108 (heartbeat files: no disk stalls)
            "ceiling:app",
        ]
    else:
        command = [*_granian(bench_venv, port, workers, threads), "ceiling:app"]
    return ServerSpec("ceiling", server, workers, threads, port, command, env, bench_root, settings)


def _granian(bench_venv: Path, port: int, workers: int, threads: int) -> list[str]:
    return [
        str(bench_venv / "bin" / "granian"),
        "--interface",
        "wsgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--blocking-threads",
        str(threads),
        "--no-ws",
        "--log-level",
        "warning",
    ]


@dataclass
class Running:
    spec: ServerSpec
    server: ServerProcess

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self.server.process is not None  # noqa: S101 (started)
        return self.server.process

    @property
    def base_url(self) -> str:
        return self.server.base_url


def start(spec: ServerSpec, log_path: Path) -> Running:
    server = ServerProcess(
        spec.command, spec.env, spec.port, log_path.parent, name=log_path.stem, cwd=spec.cwd, ready_path="/health"
    )
    server.start()
    return Running(spec, server)


def stop(running: Running) -> None:
    """SIGTERM (a graceful stop, as in production), then SIGKILL the whole group if it lingers."""
    running.server.stop(signal.SIGTERM, STOP_TIMEOUT_SECONDS)
    _keep_tail(running.server.log)


def _keep_tail(path: Path, lines: int = 500) -> None:
    """Keep the end of a server's log: the API logs a line per request (tens of MB a run)."""
    text = path.read_bytes().splitlines(keepends=True)
    if len(text) > lines:
        path.write_bytes(b"".join([b"[... earlier lines dropped by the benchmark ...]\n", *text[-lines:]]))
