"""``python -m bench.sweep``: short harness runs over server settings, to choose them by measurement.

Vary one side's server, the other side stays as the control:

    python -m bench.sweep --api granian:2x1 granian:2x2 granian:4x1
    python -m bench.sweep --ceiling granian:2x2 gunicorn:2x1 gunicorn:2x4

``SERVER:WORKERSxTHREADS``; arguments after ``--`` go to every ``bench.run``. Prints one
markdown table: req/s, API / ceiling ratio and CPU per request, per endpoint.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from . import run

_SETTING = re.compile(r"(?P<server>gunicorn|granian):(?P<workers>\d+)x(?P<threads>\d+)")


def _setting(text: str) -> tuple[str, str, str]:
    match = _SETTING.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected SERVER:WORKERSxTHREADS (gunicorn:2x4), got {text!r}")
    return match["server"], match["workers"], match["threads"]


def _row(result: dict[str, Any], role: str, keys: list[str]) -> str:
    cells = []
    for key in keys:
        entry = result["summary"][key]
        mine = entry[role]
        cells.append(f"{mine['rps']:,.0f} / {entry['ratio']:.2f}x / {mine['cpu_us']:,.0f} µs / {mine['p99_ms']:.0f} ms")
    memory = result["memory"][role]
    rss = max(worker["rss_mb"] for worker in memory)
    uss = max(worker["uss_mb"] for worker in memory)
    return f"| {result['settings'][role]['describe']} | " + " | ".join(cells) + f" | {rss:.0f} / {uss:.0f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep", description=__doc__)
    side = parser.add_mutually_exclusive_group(required=True)
    side.add_argument("--api", type=_setting, nargs="+", help="API server settings to try")
    side.add_argument("--ceiling", type=_setting, nargs="+", help="ceiling server settings to try")
    parser.add_argument("--out-dir", type=Path, default=run.BENCH_ROOT / "results" / "sweep")
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--endpoints", default="list_first,get_item,create_item,health")
    parser.add_argument("extra", nargs="*", help="more bench.run arguments, after --")
    args = parser.parse_args(argv)
    role = "api" if args.api else "ceiling"
    results = []
    for server, workers, threads in args.api or args.ceiling:
        out = args.out_dir / f"{role}-{server}-{workers}x{threads}"
        run.main([
            "--out-dir", str(out), "--rounds", str(args.rounds), "--duration", str(args.duration),
            "--warmup", "1", "--endpoints", args.endpoints,
            f"--{role}-server", server, f"--{role}-workers", workers, f"--{role}-threads", threads,
            *args.extra,
        ])  # fmt: skip
        results.append(json.loads((out / "latest.json").read_text()))
    keys = args.endpoints.split(",")
    print(f"\nEach cell: {role} req/s / API:ceiling ratio / {role} CPU per request / {role} p99 (medians)\n")
    print(f"| {role} server | " + " | ".join(keys) + " | RSS / USS MB per worker |")
    print("| --- |" + " ---: |" * (len(keys) + 1))
    for result in results:
        print(_row(result, role, keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
