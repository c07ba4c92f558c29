"""Cost of logging + metrics per request: the app with and without them, in one run.

    .venv/bin/python scripts/observability_overhead.py wrk [--rounds 5] [--seconds 10]
    .venv/bin/python scripts/observability_overhead.py instructions [--requests 500]   # ~15 min

Needs PostgreSQL at 127.0.0.1:5432 (trust auth), and wrk or valgrind (Debian packages).
The "without" arm builds the app with observability.init_app replaced by a no-op.

wrk: the production server as the image runs it (python -m app.server: granian, 2
workers of 1 thread, APP_ENV=production, logs to a file as a container's log driver takes
them); arms alternate, so drift on a shared machine hits both. instructions: requests
served in-process under callgrind, which counts CPU instructions, the same on every run
whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import AbstractContextManager
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import databases  # noqa: E402 (after the path insert: run as a script)
from tests.support.server import server_command  # noqa: E402
from tests.support.tcp import free_port  # noqa: E402

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SEED = "INSERT INTO items (title) VALUES ('benchmark item')"
PATHS = ("/health", "/items/1")
# The server's command per arm; "without" is the same server (app/server.py) on create_app_without.
ARMS = {"with": server_command(), "without": [sys.executable, str(Path(__file__).resolve()), "_serve_without"]}


def _no_observability() -> AbstractContextManager[object]:
    # No recorder (None): the middleware then skips metrics and the access line per request.
    return mock.patch("app.observability.init_app", return_value=None)


def create_app_without() -> object:
    """The app with no access log, no request metrics, no pool gauges, no /metrics."""
    from app.main import create_app

    with _no_observability():
        return create_app()


def _serve_without() -> None:
    """``python -m app.server --host 127.0.0.1``, building the app without observability."""
    from app import server

    # The server process builds the app once; its workers fork with it.
    with _no_observability():
        server.main(["--host", "127.0.0.1"])


def _serve(command: list[str], url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "APP_ENV": "production",
        "DATABASE_URL": url,
        "SECRET_KEY": "b" * 48,
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "SERVER_THREADS": "2",
        "RATE_LIMIT_ENABLED": "false",
        "PYTHONPATH": str(ROOT),
    }
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)  # noqa: S603
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/items/1", timeout=2).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the server did not start; see {log}")


def _settings(url: str) -> dict[str, object]:
    return {"APP_ENV": "production", "DATABASE_URL": url, "SECRET_KEY": "b" * 48, "RATE_LIMIT_ENABLED": "false"}


def _loop(arm: str, path: str, requests: int, url: str) -> None:
    """Serve ``requests`` requests in-process (run under callgrind by ``instructions``)."""
    from werkzeug.test import EnvironBuilder

    from app.main import create_app

    app = create_app_without() if arm == "without" else create_app(_settings(url))
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (the log lines still get formatted and written)
    environ = EnvironBuilder(path=path, headers={"User-Agent": "bench"}).get_environ()
    for _ in range(50 + requests):  # 50 to warm up: connections, caches
        body = app(dict(environ), lambda *_: None)  # type: ignore[operator]
        b"".join(body)
        body.close()


def _instructions(arm: str, path: str, requests: int, url: str) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__]
    env = {**os.environ, **{k: str(v) for k, v in _settings(url).items()}, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(  # noqa: S603
        [*command, "_loop", arm, path, str(requests), url], capture_output=True, text=True, check=True, env=env
    )
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise RuntimeError(result.stderr)
    return int(match[1])


def instructions(requests: int) -> None:
    url = databases.seeded_database(ADMIN_URL, "items_overhead", SEED)
    try:
        print(f"CPU instructions per request (callgrind, {requests} requests in-process, after start-up)")
        for path in PATHS:
            per_request = {
                arm: (_instructions(arm, path, requests, url) - _instructions(arm, path, 0, url)) / requests
                for arm in ARMS
            }
            extra = per_request["with"] - per_request["without"]
            print(
                f"{path:10} without {per_request['without']:9.0f}   with {per_request['with']:9.0f}   "
                f"extra {extra:8.0f} ({100 * extra / per_request['without']:+.1f}%)"
            )
    finally:
        databases.drop_seeded_database(url)


def _wrk(port: int, path: str, seconds: int) -> float:
    result = subprocess.run(  # noqa: S603
        ["wrk", "-t2", "-c8", f"-d{seconds}s", f"http://127.0.0.1:{port}{path}"],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    )
    if "Non-2xx" in result.stdout:
        raise RuntimeError(result.stdout)
    match = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    if match is None:
        raise RuntimeError(result.stdout)
    return float(match[1])


def wrk(rounds: int, seconds: int) -> None:
    url = databases.seeded_database(ADMIN_URL, "items_overhead", SEED)
    results: dict[tuple[str, str], list[float]] = {(arm, path): [] for arm in ARMS for path in PATHS}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(rounds):
                for arm, command in ARMS.items():
                    port = free_port()
                    process = _serve(command, url, port, Path(tmp) / f"{arm}.log")
                    try:
                        for path in PATHS:
                            _wrk(port, path, 2)  # warm-up: connections, caches
                            results[arm, path].append(_wrk(port, path, seconds))
                    finally:
                        process.send_signal(signal.SIGINT)  # a graceful stop without the SIGTERM drain
                        process.wait(timeout=30)
    finally:
        databases.drop_seeded_database(url)
    server = "app/server.py (granian) 2 workers x 1 thread"
    print(f"wrk -t2 -c8, {rounds} rounds of {seconds} s, {server}, {os.cpu_count()} cores; medians")
    for path in PATHS:
        with_, without = (statistics.median(results[arm, path]) for arm in ARMS)
        # Paired by round: each round ran both arms back to back.
        ratio = statistics.median(w / wo for w, wo in zip(results["with", path], results["without", path], strict=True))
        print(
            f"{path:10} without {without:7.0f} req/s   with {with_:7.0f} req/s   "
            f"paired change {100 * (ratio - 1):+5.1f}%"
        )
        print(f"{'':10} rounds: without {results['without', path]}  with {results['with', path]}")


def main() -> None:
    if sys.argv[1:2] == ["_loop"]:
        _loop(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
        return
    if sys.argv[1:2] == ["_serve_without"]:
        _serve_without()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    wrk_mode = modes.add_parser("wrk", help="requests/second through the production server")
    wrk_mode.add_argument("--rounds", type=int, default=5)
    wrk_mode.add_argument("--seconds", type=int, default=10)
    instructions_mode = modes.add_parser("instructions", help="CPU instructions per request (callgrind)")
    instructions_mode.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    if args.mode == "wrk":
        wrk(args.rounds, args.seconds)
    else:
        instructions(args.requests)


if __name__ == "__main__":
    main()
