"""What the servers under test use: CPU time and memory, read from /proc."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .servers import Running


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        children += [int(child) for child in task.read_text().split()]
    return children


def _memory_kb(pid: int) -> dict[str, int]:
    """RSS, PSS (shared pages split between their users) and USS (private pages) in kB."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    return {"rss": fields["Rss"], "pss": fields["Pss"], "uss": fields["Private_Clean"] + fields["Private_Dirty"]}


def worker_memory(running: Running) -> list[dict[str, Any]]:
    """Memory of each worker process (the server's children that run Python code).

    Workers forked from a preloaded master share the imported code: RSS counts it in every
    worker, PSS splits it between them, USS (private memory) is what one more worker costs.
    """
    workers = []
    for pid in _children(running.process.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            memory = _memory_kb(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        if "resource_tracker" in cmdline:  # multiprocessing's helper, not a worker
            continue
        workers.append({"pid": pid, **{f"{name}_mb": round(kb / 1024, 1) for name, kb in memory.items()}})
    return workers


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by ``pids`` (processes gone since are skipped)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _CLOCK_TICKS


def process_tree(running: Running) -> list[int]:
    """The server's main process and every process under it."""
    pids, index = [running.process.pid], 0
    while index < len(pids):
        pids += _children(pids[index])
        index += 1
    return pids
