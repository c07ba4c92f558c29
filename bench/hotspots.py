"""``python -m bench.hotspots``: where an API worker's CPU time goes, per endpoint, under wrk load.

Starts the API as the benchmark does and samples its workers with py-spy while wrk loads
one endpoint. Only samples holding the GIL count: Python's own CPU time, not the waits on
PostgreSQL or the network. Prints the share of samples per library and the heaviest
frames; the raw stacks are kept (``*.txt``, the "collapsed" format of flame graphs).
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
from pathlib import Path

from tests.support.tcp import free_port

from . import database, load, preflight, servers
from .run import BENCH_ROOT, REPO_ROOT, log

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]*)(?::\d+)?\)$")
# The "layer" of a frame, from its file: the first match wins.
LAYERS = (
    ("gunicorn", "/gunicorn/"),
    ("granian", "/granian/"),
    ("werkzeug", "/werkzeug/"),
    ("flask", "/flask/"),
    ("sqlalchemy", "/sqlalchemy/"),
    ("psycopg", "/psycopg"),
    ("pydantic", "/pydantic"),
    ("app", "/app/"),
    ("logging", "/pythonjsonlogger/"),
    ("logging", "/logging/"),
    ("prometheus", "/prometheus_client/"),
    ("rate limits", "/limits/"),
    ("redis", "/redis/"),
)


def layer(file: str) -> str:
    """py-spy names files relative to their sys.path entry: ``sqlalchemy/orm/session.py``."""
    path = "/" + file
    for name, marker in LAYERS:
        if marker in path:
            return name
    return "python stdlib" if "/" not in file or "/lib/python3" in file else "other"


def summarize(raw: Path, top: int) -> str:
    """Self time per layer, inclusive time per layer (a layer counted once per stack), top frames."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    frames: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        parsed = [match for frame in stack.split(";") if (match := _FRAME.match(frame))]
        if not parsed:
            continue
        total += count
        leaf = parsed[-1]
        own[layer(leaf["file"])] += count
        frames[f"{leaf['function']} ({Path(leaf['file']).name})"] += count
        for name in {layer(match["file"]) for match in parsed}:
            inclusive[name] += count
    lines = [f"{total} samples holding the GIL", "  layer           self   inclusive"]
    for name, count in own.most_common():
        lines.append(f"  {name:<14} {100 * count / total:5.1f}%  {100 * inclusive[name] / total:5.1f}%")
    lines.append("  heaviest frames (self):")
    lines += [f"    {100 * count / total:5.1f}%  {frame}" for frame, count in frames.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotspots", description=__doc__)
    parser.add_argument("--endpoints", default="list_first,get_item,create_item")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument(
        "--api-server", choices=("granian",), default="granian", help="the production server (app/server.py)"
    )
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--api-threads", type=int, default=2)
    parser.add_argument("--api-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--app-root", type=Path, default=REPO_ROOT)
    parser.add_argument("--app-venv", type=Path)
    parser.add_argument("--admin-db", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    parser.add_argument("--out-dir", type=Path, default=BENCH_ROOT / "results" / "hotspots")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    app_venv = args.app_venv or args.app_root / ".venv"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    wrk, py_spy = load.ensure_wrk(), str(Path(sys.prefix) / "bin" / "py-spy")
    db = database.create(args.admin_db)
    try:
        database.migrate(db, args.app_root, app_venv / "bin" / "flask")
        first_id, last_id = database.seed(db, 10_000)
        token = database.write_token(args.app_root, app_venv / "bin" / "flask", db)
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        spec = servers.api_spec(
            args.api_server, args.api_workers, args.api_threads, free_port(),
            app_root=args.app_root, app_venv=app_venv, bench_venv=Path(sys.prefix),
            database_url=db.sqlalchemy_url, extra_env=dict(item.split("=", 1) for item in args.api_env),
        )  # fmt: skip
        api = servers.start(spec, args.out_dir / "api.log")
        try:
            deep = preflight.deep_cursor(api.base_url, 10_000)
            settings = load.LoadSettings(threads=2, connections=32, duration=args.duration, timeout=5)
            for endpoint in load.ENDPOINTS:
                if endpoint.key not in args.endpoints.split(","):
                    continue
                path = endpoint.path.format(deep_cursor=deep, first_id=first_id)
                endpoint = load.Endpoint(**{**endpoint.__dict__, "path": path})
                script_args = [str(first_id), str(last_id)] if endpoint.key == "get_item" else ["hotspots"]
                headers = auth if endpoint.writes else {}
                load.run(wrk, api.base_url, endpoint, settings, duration=2, script_args=script_args, headers=headers)
                raw = args.out_dir / f"{endpoint.key}.txt"
                sampler = subprocess.Popen([
                    py_spy, "record", "--pid", str(api.process.pid), "--subprocesses", "--nonblocking",
                    "--rate", str(args.rate), "--duration", str(args.duration), "--format", "raw", "--gil",
                    "--output", str(raw),
                ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
                result = load.run(
                    wrk,
                    api.base_url,
                    endpoint,
                    settings,
                    duration=args.duration,
                    script_args=script_args,
                    headers=headers,
                )
                if result["errors"]["total"]:
                    log(f"{endpoint.label}: {result['errors']} errors: the profile is not of the normal path")
                sampler.wait(timeout=args.duration + 30)
                log(f"{endpoint.label}: {result['rps']:,.0f} req/s under the profiler")
                print(summarize(raw, args.top), flush=True)
        finally:
            servers.stop(api)
    finally:
        database.drop(args.admin_db, db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
