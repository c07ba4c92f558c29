"""Which priority ``make bench`` gives wrk: real-time when the process may, else normal (bench/load.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASK_FOR_FIFO = "from bench.load import scheduling; print(scheduling('fifo'))"


def _scheduling_in_a_process(prefix: list[str]) -> str:
    """``scheduling('fifo')`` in a new process (the probe's answer is cached per process)."""
    completed = subprocess.run(
        [*prefix, sys.executable, "-c", ASK_FOR_FIFO], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return completed.stdout.strip()


def _without_real_time_permission() -> list[str]:
    """A command prefix that takes away what a real-time priority needs.

    An unprivileged process needs a real-time priority limit (RLIMIT_RTPRIO) of at least
    the priority, lowered to 0 here; root also has CAP_SYS_NICE, dropped from its bounding
    set (then it is gone from every program it runs).
    """
    no_limit = ["prlimit", "--rtprio=0"]
    if os.geteuid() != 0:
        return no_limit
    return ["setpriv", "--bounding-set=-sys_nice", "--inh-caps=-sys_nice", "--", *no_limit]


def test_wrk_falls_back_to_normal_priority_without_permission_for_a_real_time_one() -> None:
    assert _scheduling_in_a_process(_without_real_time_permission()) == "normal"


@pytest.mark.skipif(os.geteuid() != 0, reason="a real-time priority needs root or CAP_SYS_NICE (CI runs as root)")
def test_wrk_gets_a_real_time_priority_when_the_process_may_set_one() -> None:
    assert _scheduling_in_a_process([]) == "fifo"


def test_normal_priority_asked_for_stays_normal_without_a_probe() -> None:
    from bench.load import scheduling

    assert scheduling("normal") == "normal"
