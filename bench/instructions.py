"""CPU instructions per request, per endpoint, counted by callgrind: load-independent.

    .venv/bin/python -m bench.instructions [--requests 200]

The app runs in-process (WSGI, no server) with the production middleware on: JSON access
log at INFO, Redis rate limiter at a limit never reached, multiprocess metrics, a write
token on ``POST /items``. One valgrind run warms every endpoint up, then serves
``--requests`` requests per endpoint; callgrind dumps its counters at a marker call
(``os.getpgrp()``) between endpoints, so each dump holds one endpoint's requests only.
Needs PostgreSQL at 127.0.0.1:5432 (trust), Redis at 127.0.0.1:6379 (db 15) and valgrind.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support import databases

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/15"
WARM_UP = 50
ENDPOINTS = ("GET /health", "GET /items?limit=20", "GET /items/<id>", "POST /items")
SEED = "INSERT INTO items (title, description) SELECT 'Item ' || n, 'Seeded ' || n FROM generate_series(1, 100) n"
MARKER = "getpgrp"  # a libc call nothing else on the request path makes


def _environment(url: str, metrics_dir: str) -> dict[str, str]:
    return {
        "APP_ENV": "production",
        "DATABASE_URL": url,
        "SECRET_KEY": "b" * 48,
        "REDIS_URL": REDIS_URL,
        "RATE_LIMIT": "1000000000 per hour",
        "RATE_LIMIT_WRITES": "1000000000 per hour",
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        "LOG_LEVEL": "INFO",
    }


def serve(requests: int) -> None:
    """Run under callgrind: warm up, then one marker call before and after each endpoint."""
    from app.auth import new_token
    from app.crud.tokens import create_token
    from app.db import get_database
    from app.main import create_app
    from werkzeug.test import EnvironBuilder

    app = create_app()
    with app.app_context():
        token = new_token()
        session = get_database().sessionmaker()
        create_token(
            session,
            name=f"instr-{secrets.token_hex(4)}",
            scope="write",
            key_id=token.key_id,
            token_hash=token.token_hash,
        )
        session.commit()
        session.close()
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (the log lines still get formatted and written)
    reads = {"User-Agent": "bench"}
    writes = {**reads, "Authorization": f"Bearer {token.token}"}  # as make bench: a token on writes
    counter = iter(range(10**9))

    def environ(endpoint: str) -> dict[str, object]:
        method, path = endpoint.split(" ")
        if endpoint == "POST /items":
            body = json.dumps({"title": f"item {next(counter)}", "description": "made by bench.instructions"})
            return EnvironBuilder(
                path=path, method=method, headers=writes, data=body, content_type="application/json"
            ).get_environ()
        return EnvironBuilder(path=path.replace("<id>", "50"), method=method, headers=reads).get_environ()

    def call(environ: dict[str, object]) -> None:
        statuses: list[str] = []
        body = app(environ, lambda status, *_: statuses.append(status))  # type: ignore[arg-type]
        b"".join(body)
        close = getattr(body, "close", None)  # a list (a body in memory) has none
        if close is not None:
            close()
        if not statuses[0].startswith("20"):
            raise RuntimeError(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}: {statuses[0]}")

    for endpoint in ENDPOINTS:
        for _ in range(WARM_UP):
            call(environ(endpoint))
    # Built before counting starts: the requests' environs are not the app's work.
    measured = {endpoint: [environ(endpoint) for _ in range(requests)] for endpoint in ENDPOINTS}
    for endpoint in ENDPOINTS:
        os.getpgrp()
        for request in measured[endpoint]:
            call(request)
    os.getpgrp()


def measure(requests: int) -> dict[str, float]:
    url = databases.seeded_database(ADMIN_URL, "items_instr", SEED)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            metrics_dir = Path(tmp) / "metrics"
            metrics_dir.mkdir()
            out = Path(tmp) / "callgrind.out"
            env = {**os.environ, **_environment(url, str(metrics_dir)), "PYTHONPATH": str(ROOT)}
            command = [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                f"--dump-before={MARKER}",
                sys.executable,
                "-m",
                "bench.instructions",
                "--serve",
                str(requests),
            ]
            subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
            dumps = sorted(Path(tmp).glob("callgrind.out.*"), key=lambda path: int(path.name.rsplit(".", 1)[1]))
            totals = [_total(path) for path in dumps]
    finally:
        databases.drop_seeded_database(url)
    # Dump 1 ends the warm-up; dumps 2.. each hold one endpoint's requests.
    if len(totals) < len(ENDPOINTS) + 1:
        raise RuntimeError(f"expected {len(ENDPOINTS) + 1} dumps, got {len(totals)}")
    return {endpoint: totals[i + 1] / requests for i, endpoint in enumerate(ENDPOINTS)}


def _total(path: Path) -> int:
    match = re.search(r"^(?:summary|totals): (\d+)", path.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no totals in {path}")
    return int(match[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    sys.path.insert(0, str(ROOT))
    per_request = measure(args.requests)
    print(f"instructions per request (callgrind, {args.requests} requests per endpoint after {WARM_UP} of warm-up)")
    for endpoint, count in per_request.items():
        print(f"{endpoint:22} {count / 1e6:6.2f} M")


if __name__ == "__main__":
    main()
