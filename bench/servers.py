"""Start, probe, measure and stop the two servers under test (the API and the ceiling)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

# Well-known service ports on this kind of machine, and the app's own default.
RESERVED_PORTS = frozenset({1883, 3306, 4222, 5432, 5672, 6379, 8000})
READY_TIMEOUT_SECONDS = 30.0
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


def free_port(start: int, taken: set[int]) -> int:
    """The first port from ``start`` (below 32768) that nothing listens on."""
    for port in range(start, 32768):
        if port in RESERVED_PORTS or port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError(f"no free port between {start} and 32767")


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
    """The API with its production configuration (APP_ENV=production, the production server)."""
    settings = {
        "APP_ENV": "production",
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_THREADS": str(threads),
        **rate_limit_env(),
        **extra_env,
    }
    env = {**os.environ, **settings, "DATABASE_URL": database_url, "SECRET_KEY": secrets.token_urlsafe(48)}
    if server == "gunicorn":
        # The project's own gunicorn.conf.py; only the bind is narrowed to loopback.
        command = [str(app_venv / "bin" / "gunicorn"), "--config", "gunicorn.conf.py"]
        command += ["--bind", f"127.0.0.1:{port}", "app.main:create_app()"]
    else:
        # Same app, same dependency pins (bench/requirements.txt includes requirements.txt).
        command = [*_granian(bench_venv, port, workers, threads), "--factory", "app.main:create_app"]
        env["PYTHONPATH"] = str(app_root)
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
            "/dev/shm",  # noqa: S108 (as gunicorn.conf.py)
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
    process: subprocess.Popen[bytes]
    log: IO[Any]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.spec.port}"


def start(spec: ServerSpec, log_path: Path) -> Running:
    log = log_path.open("wb")
    process = subprocess.Popen(
        spec.command, cwd=spec.cwd, env=spec.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    running = Running(spec, process, log)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{spec.role} server exited with {process.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"{running.base_url}/health", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return running
        except OSError:
            time.sleep(0.2)
    stop(running)
    raise RuntimeError(f"{spec.role} server did not answer /health within {READY_TIMEOUT_SECONDS:.0f} s")


def stop(running: Running) -> None:
    """SIGTERM (a graceful stop, as in production), then SIGKILL the whole group if it lingers."""
    process = running.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stray workers, if any
    process.wait()
    running.log.close()
    _keep_tail(Path(running.log.name))


def _keep_tail(path: Path, lines: int = 500) -> None:
    """Keep the end of a server's log: the API logs a line per request (tens of MB a run)."""
    text = path.read_bytes().splitlines(keepends=True)
    if len(text) > lines:
        path.write_bytes(b"".join([b"[... earlier lines dropped by the benchmark ...]\n", *text[-lines:]]))
