"""What the numbers were measured on: the machine and the exact versions."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from .load import wrk_version

APP_PACKAGES = ("flask", "werkzeug", "sqlalchemy", "psycopg", "pydantic", "orjson", "granian")
BENCH_PACKAGES = ("gunicorn", "psycopg-pool")


def machine() -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if not line.strip():
            break  # the first processor's block is enough
        fields.setdefault(name.strip(), value.strip())
    # Hosts of one machine kind differ, all named "AMD EPYC": the same commit cost 1.3-1.7x the
    # CPU per request on one as on another (docs/performance.md), so the generation is recorded.
    cpu = fields.get("model name", "unknown CPU")
    if "cpu family" in fields:
        cpu += f" family {fields['cpu family']} model {fields.get('model', '?')}"
    if "cpu MHz" in fields:
        cpu += f" {float(fields['cpu MHz']):.0f} MHz"
    memory_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    cores = os.cpu_count() or 0
    memory = f"{memory_kb / 1024 / 1024:.0f} GiB"
    return {
        "cpu": cpu,
        "cores": str(cores),
        "memory": memory,
        "kernel": f"Linux {platform.release()}",
        "summary": f"{cores} cores ({cpu}), {memory} RAM",
        # Other work on the machine skews every number: kept so a noisy run can be spotted.
        "loadavg_before": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def versions(app_venv: Path, wrk: str, postgresql: str) -> dict[str, str]:
    """The API's packages as its own virtualenv has them, then the ceiling's and the tools'."""
    probe = (
        "import json, sys; from importlib import metadata; "
        f"found = {{n: metadata.version(n) for n in {APP_PACKAGES!r}}}; "
        "print(json.dumps({'python': sys.version.split()[0], **found}))"
    )
    found = subprocess.run([str(app_venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=True)
    result: dict[str, str] = json.loads(found.stdout)
    result.update({name: metadata.version(name) for name in BENCH_PACKAGES})
    result["wrk"] = wrk_version(wrk).removeprefix("wrk ")
    result["postgresql"] = postgresql
    return result
