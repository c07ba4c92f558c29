"""Bounded wrk runs on loopback, one endpoint at a time, parsed into numbers."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LUA_DIR = Path(__file__).resolve().parent / "lua"
RESULT_PREFIX = "BENCH_RESULT "


@dataclass(frozen=True)
class Endpoint:
    """One benchmarked request; ``path`` may hold placeholders filled in once the data exists."""

    key: str
    label: str
    path: str
    script: str | None = None  # a file in bench/lua/ that writes the requests
    writes: bool = False


ENDPOINTS = (
    Endpoint("list_first", "GET /items?limit=20", "/items?limit=20"),
    Endpoint("list_deep", "GET /items?limit=20&cursor=<deep>", "/items?limit=20&cursor={deep_cursor}"),
    Endpoint("get_item", "GET /items/<id>", "/items/{first_id}", script="get_item.lua"),
    Endpoint("create_item", "POST /items", "/items", script="post_item.lua", writes=True),
    Endpoint("health", "GET /health", "/health"),
)


def ensure_wrk() -> str:
    """The path of wrk, installed from Debian's packages first when missing (fresh CI machines)."""
    found = shutil.which("wrk")
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise RuntimeError("wrk is not installed and apt-get is not available: install wrk")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("apt-get installed wrk, but it is not on PATH")
    return found


def wrk_version(wrk: str) -> str:
    # wrk prints its version line and usage on -v, and exits non-zero.
    output = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    first = (output.stdout or output.stderr).splitlines()
    return first[0].split(" [")[0] if first else "unknown"


# wrk times a request from its write to its read of the answer. wrk, the servers and PostgreSQL
# share this machine's cores; at normal priority an answer already in wrk's socket waits until
# the scheduler runs wrk again (up to a slice, milliseconds), and wrk counts that wait as the
# server's latency: in a packet capture on loopback wrk reported a p99 of 16 ms where the
# server's own turnaround p99 was 3.9 ms (docs/performance.md, "The /health tail"). A
# real-time priority lets wrk run as soon as an answer arrives; it uses about a fifth of one
# core, so it cannot starve the servers it measures.
FIFO_PRIORITY = 10


@functools.cache
def fifo_allowed() -> bool:
    """Whether this process may start wrk at a real-time priority (root or CAP_SYS_NICE)."""
    chrt = shutil.which("chrt")
    if chrt is None:
        return False
    probe = subprocess.run([chrt, "--fifo", str(FIFO_PRIORITY), "true"], capture_output=True, check=False)
    return probe.returncode == 0


def scheduling(wanted: str) -> str:
    """The scheduling wrk gets: ``fifo`` when asked for and allowed, else ``normal``."""
    return "fifo" if wanted == "fifo" and fifo_allowed() else "normal"


@dataclass(frozen=True)
class LoadSettings:
    threads: int
    connections: int
    duration: float  # seconds
    timeout: float  # seconds; a slower response counts as a timeout error
    scheduling: str = "normal"  # "fifo": wrk at real-time priority FIFO_PRIORITY (see above)


def run(
    wrk: str,
    base_url: str,
    endpoint: Endpoint,
    settings: LoadSettings,
    *,
    duration: float,
    script_args: list[str],
    headers: dict[str, str],
) -> dict[str, Any]:
    """One wrk run of ``duration`` seconds against ``endpoint``; wrk's numbers, in ms and req/s."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bench-") as script:
        if endpoint.script:
            script.write((LUA_DIR / endpoint.script).read_text())
        script.write((LUA_DIR / "report.lua").read_text())
        script.flush()
        command = ["chrt", "--fifo", str(FIFO_PRIORITY)] if settings.scheduling == "fifo" else []
        command += [
            wrk,
            "--threads",
            str(settings.threads),
            "--connections",
            str(settings.connections),
            "--duration",
            f"{max(duration, 1):g}s",
            "--timeout",
            f"{settings.timeout:g}s",
            "--script",
            script.name,
        ]
        for name, value in headers.items():
            command += ["--header", f"{name}: {value}"]
        command += [base_url + endpoint.path, "--", *script_args]
        completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=duration + 60)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip() or completed.stdout}")
    raw = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    seconds = raw["duration_us"] / 1e6
    socket_errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    return {
        "requests": raw["requests"],
        "rps": round(raw["requests"] / seconds, 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "mean_ms": round(raw["mean_us"] / 1000, 3),
        "errors": {
            "http": raw["status"],
            "connect": raw["connect"],
            "read": raw["read"],
            "write": raw["write"],
            "timeout": raw["timeout"],
            "total": raw["status"] + socket_errors,
        },
    }
