"""``python -m bench.run``: the API beside the ceiling, interleaved, and the report.

``make bench`` runs it in full; ``make bench-smoke`` runs every step with one short
round, and writes its report under bench/results/smoke/ instead of docs/.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from tests.support.tcp import free_port

from . import database, load, preflight, processes, report, servers
from .environment import machine, versions

BENCH_ROOT = Path(__file__).resolve().parent
REPO_ROOT = BENCH_ROOT.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="one round of 1 s per endpoint and side (~10 s)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load before each run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--load-scheduling",
        choices=("fifo", "normal"),
        default="fifo",
        help="wrk at a real-time priority (needs root or CAP_SYS_NICE; falls back to normal) or not",
    )
    parser.add_argument("--items", type=int, default=10_000, help="items to seed")
    parser.add_argument("--endpoints", default=",".join(e.key for e in load.ENDPOINTS))
    parser.add_argument(
        "--api-server", choices=("granian",), default="granian", help="the production server (app/server.py)"
    )
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--api-threads", type=int, default=2)  # the production default (SERVER_THREADS)
    parser.add_argument(
        "--api-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the API (repeatable), e.g. DB_POOL_SIZE=2",
    )
    parser.add_argument("--ceiling-server", choices=("gunicorn", "granian"), default="granian")
    parser.add_argument("--ceiling-workers", type=int, default=2)
    parser.add_argument("--ceiling-threads", type=int, default=2)
    parser.add_argument("--app-root", type=Path, default=REPO_ROOT, help="the project to serve (e.g. a scratch copy)")
    parser.add_argument("--app-venv", type=Path, help="its virtualenv (default: APP_ROOT/.venv)")
    parser.add_argument("--admin-db", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    parser.add_argument("--out-dir", type=Path, help="default: bench/results (bench/results/smoke with --smoke)")
    parser.add_argument("--docs", type=Path, help="document whose generated block to update")
    parser.add_argument("--label", default="", help="a note stored in the result file")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.duration, args.warmup = 1, 1, 0
    # Only a default full run of this repository's app rewrites docs/performance.md.
    official = args.out_dir is None and not args.smoke and args.app_root.resolve() == REPO_ROOT
    args.out_dir = (args.out_dir or BENCH_ROOT / "results" / ("smoke" if args.smoke else "")).resolve()
    if args.docs is None:
        args.docs = REPO_ROOT / "docs" / "performance.md" if official else args.out_dir / "performance.md"
    args.app_venv = args.app_venv or args.app_root / ".venv"
    return args


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so the finally blocks stop the servers and drop the database


def log(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


@dataclass
class BenchRun:
    """What one benchmark run has set up: its database, data, servers and token."""

    args: argparse.Namespace
    wrk: str
    db: database.BenchDatabase
    run_id: str
    scheduling: str  # wrk's: "fifo" (real-time priority) or "normal"
    first_id: int = 0
    last_id: int = 0
    token: str | None = None
    deep: str = ""
    running: dict[str, servers.Running] = field(default_factory=dict)

    def cpu_seconds(self, role: str) -> float:
        """CPU used so far by one side: its server processes and its PostgreSQL backends."""
        backends = database.backend_pids(self.args.admin_db, self.db)[role]
        return processes.cpu_seconds(processes.process_tree(self.running[role]) + backends)


def specs(ctx: BenchRun) -> tuple[servers.ServerSpec, servers.ServerSpec]:
    args = ctx.args
    api = servers.api_spec(
        args.api_server,
        args.api_workers,
        args.api_threads,
        free_port(),
        app_root=args.app_root,
        app_venv=args.app_venv,
        bench_venv=Path(sys.prefix),
        database_url=ctx.db.sqlalchemy_url,
        extra_env=dict(item.split("=", 1) for item in args.api_env),
    )
    ceiling = servers.ceiling_spec(
        args.ceiling_server,
        args.ceiling_workers,
        args.ceiling_threads,
        free_port(),
        bench_root=BENCH_ROOT,
        bench_venv=Path(sys.prefix),
        conninfo=ctx.db.conninfo,
    )
    return api, ceiling


def one_run(ctx: BenchRun, endpoint: load.Endpoint, role: str, round_: int) -> dict[str, Any]:
    """Warm-up, then one measured wrk run, with the CPU the side used per request."""
    args = ctx.args
    settings = load.LoadSettings(args.threads, args.connections, args.duration, timeout=5, scheduling=ctx.scheduling)
    if endpoint.key == "get_item":
        script_args = [str(ctx.first_id), str(ctx.last_id)]
    else:
        script_args = [f"{ctx.run_id}-{role}-r{round_}"]  # makes every POST body distinct
    auth = {"Authorization": f"Bearer {ctx.token}"} if ctx.token else {}
    kwargs: dict[str, Any] = {"script_args": script_args, "headers": auth if endpoint.writes and role == "api" else {}}
    target = ctx.running[role].base_url
    if args.warmup:
        load.run(ctx.wrk, target, endpoint, settings, duration=args.warmup, **kwargs)
    cpu_before = ctx.cpu_seconds(role)
    result = load.run(ctx.wrk, target, endpoint, settings, duration=args.duration, **kwargs)
    cpu = ctx.cpu_seconds(role) - cpu_before
    result["cpu_us_per_request"] = round(1e6 * cpu / result["requests"], 1) if result["requests"] else None
    log(
        f"round {round_} {endpoint.label:<36} {role:<8} {result['rps']:>8,.0f} req/s  "
        f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  "
        f"CPU {result['cpu_us_per_request'] or 0:6.0f} us/req  errors {result['errors']['total']}"
    )
    return {"round": round_, "endpoint": endpoint.key, "role": role, **result}


def run_rounds(ctx: BenchRun) -> list[dict[str, Any]]:
    wanted = ctx.args.endpoints.split(",")
    runs = []
    for round_ in range(1, ctx.args.rounds + 1):
        # Interleaved, and the order flips each round, so a drift hits both sides alike.
        order = ("api", "ceiling") if round_ % 2 else ("ceiling", "api")
        for endpoint in load.ENDPOINTS:
            if endpoint.key not in wanted:
                continue
            path = endpoint.path.format(deep_cursor=ctx.deep, first_id=ctx.first_id)
            concrete = dataclasses.replace(endpoint, path=path)
            runs += [one_run(ctx, concrete, role, round_) for role in order]
    return runs


def measure(ctx: BenchRun) -> dict[str, Any]:
    args = ctx.args
    flask = args.app_venv / "bin" / "flask"
    database.migrate(ctx.db, args.app_root, flask)
    ctx.first_id, ctx.last_id = database.seed(ctx.db, args.items)
    ctx.token = database.write_token(args.app_root, flask, ctx.db)
    log(f"{ctx.db.name}: migrated, {args.items:,} items seeded, write token: {'yes' if ctx.token else 'no'}")
    api, ceiling = specs(ctx)
    try:
        for spec in (api, ceiling):
            ctx.running[spec.role] = servers.start(spec, args.out_dir / f"{ctx.run_id}-{spec.role}.log")
            log(f"{spec.role}: {spec.describe()} on port {spec.port}")
        api_url, ceiling_url = ctx.running["api"].base_url, ctx.running["ceiling"].base_url
        ctx.deep = preflight.deep_cursor(api_url, args.items)
        auth = {"Authorization": f"Bearer {ctx.token}"} if ctx.token else {}
        middle = (ctx.first_id + ctx.last_id) // 2
        preflight.check_same_answers(api_url, ceiling_url, deep=ctx.deep, item_id=middle, api_headers=auth)
        log("preflight: the API and the ceiling give the same answers")
        runs = run_rounds(ctx)
        memory = {role: processes.worker_memory(running) for role, running in ctx.running.items()}
    finally:
        for running in ctx.running.values():
            servers.stop(running)
    load_settings = {
        "tool": "wrk",
        "threads": args.threads,
        "connections": args.connections,
        "scheduling": ctx.scheduling,
        "duration": args.duration,
        "warmup": args.warmup,
        "rounds": args.rounds,
    }
    return {
        "dataset": {"items": args.items, "first_id": ctx.first_id, "last_id": ctx.last_id,
                    "deep_cursor": ctx.deep, "token": ctx.token is not None},
        "settings": {"load": load_settings, **{spec.role: spec.report() for spec in (api, ceiling)}},
        "runs": runs,
        "memory": memory,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    wrk = load.ensure_wrk()
    scheduling = load.scheduling(args.load_scheduling)
    if scheduling != args.load_scheduling:
        log("wrk at normal priority (no permission for a real-time one): its waits for a core count as latency")
    host = machine()  # before the load: its load average tells what else was running
    db = database.create(args.admin_db)
    try:
        measured = measure(BenchRun(args, wrk, db, run_id, scheduling))
    finally:
        database.drop(args.admin_db, db)
        log(f"database {db.name} dropped")

    result: dict[str, Any] = {
        "id": run_id,
        "mode": "smoke" if args.smoke else "full",
        "label": args.label,
        "machine": host,
        "versions": versions(args.app_venv, wrk, database.server_version(args.admin_db)),
        **measured,
    }
    result["summary"] = report.summarize(result["runs"])
    result["targets"] = report.check_targets(result["summary"], result["memory"]["api"])
    result["elapsed_seconds"] = round(time.monotonic() - started, 1)

    json_path, chart_path = args.out_dir / f"{run_id}.json", args.out_dir / f"{run_id}.png"
    report.write_chart(result, chart_path)
    report.write_json(result, json_path)
    for source in (json_path, chart_path):
        shutil.copyfile(source, args.out_dir / f"latest{source.suffix}")
    chart_link = os.path.relpath(args.out_dir / "latest.png", args.docs.resolve().parent)
    block = report.markdown(result, chart_link)
    report.update_document(REPO_ROOT / "docs" / "performance.md", args.docs, block)
    print(block, flush=True)
    log(f"wrote {json_path}, {chart_path} and {args.docs} in {result['elapsed_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
