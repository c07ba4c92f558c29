"""The server's watchdog (app/watchdog.py) over real forked worker processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.watchdog import Watchdog

FORK = multiprocessing.get_context("fork")


def _scan_until(watchdog: Watchdog, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        watchdog.scan()
        time.sleep(0.05)


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """A worker claims its slot right after the fork, in the child: moments after start() returns."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def children() -> Iterator[list[multiprocessing.process.BaseProcess]]:
    started: list[multiprocessing.process.BaseProcess] = []
    yield started
    for child in started:
        if child.is_alive():
            child.kill()
        child.join(5)


def _start(children: list[multiprocessing.process.BaseProcess], target: Callable[[], None]) -> int:
    child = FORK.Process(target=target, daemon=True)
    child.start()
    children.append(child)
    assert child.pid is not None
    return child.pid


def test_a_worker_whose_request_stops_moving_is_killed(children: list[multiprocessing.process.BaseProcess]) -> None:
    watchdog = Watchdog(workers=1, timeout=0.5, metrics_dir=None)

    def hangs() -> None:
        watchdog.started()
        time.sleep(60)

    _start(children, hangs)
    _scan_until(watchdog, lambda: children[0].exitcode is not None)

    assert children[0].exitcode == -signal.SIGKILL


def test_a_worker_that_keeps_finishing_requests_is_left_alone(
    children: list[multiprocessing.process.BaseProcess],
) -> None:
    watchdog = Watchdog(workers=1, timeout=0.5, metrics_dir=None)

    def busy() -> None:
        for _ in range(20):  # 2 s of requests of 0.1 s each: four timeouts in all
            watchdog.started()
            time.sleep(0.1)
            watchdog.finished()

    _start(children, busy)
    _scan_until(watchdog, lambda: children[0].exitcode is not None)

    assert children[0].exitcode == 0


def test_an_idle_worker_is_left_alone(children: list[multiprocessing.process.BaseProcess]) -> None:
    """No request in flight: only the heartbeat counts, and it keeps beating."""
    watchdog = Watchdog(workers=1, timeout=1.5, metrics_dir=None)
    _start(children, lambda: time.sleep(4))

    _scan_until(watchdog, lambda: children[0].exitcode is not None)

    assert children[0].exitcode == 0


def test_a_gone_worker_leaves_the_live_gauges_and_keeps_its_counts(
    children: list[multiprocessing.process.BaseProcess], tmp_path: Path
) -> None:
    watchdog = Watchdog(workers=1, timeout=30, metrics_dir=tmp_path)

    def serves_then_dies() -> None:
        for kind in ("gauge_livesum", "gauge_liveall", "counter"):
            (tmp_path / f"{kind}_{os.getpid()}.db").write_bytes(b"")
        watchdog.started()
        watchdog.finished()

    pid = _start(children, serves_then_dies)
    children[0].join(10)
    _scan_until(watchdog, lambda: not (tmp_path / f"gauge_livesum_{pid}.db").exists())

    assert sorted(path.name for path in tmp_path.iterdir()) == [f"counter_{pid}.db"]


def test_a_replacement_worker_gets_a_slot_of_its_own(children: list[multiprocessing.process.BaseProcess]) -> None:
    """Slots for twice the workers: a new one may start before the scan frees the old one's."""
    watchdog = Watchdog(workers=1, timeout=30, metrics_dir=None)
    old = _start(children, lambda: time.sleep(0.2))
    children[0].join(10)

    new = _start(children, lambda: time.sleep(5))  # before any scan has freed the old slot
    _wait_until(lambda: new in watchdog.watched_pids())

    assert watchdog.watched_pids() == {old, new}


def test_a_process_beyond_the_slots_serves_unwatched_rather_than_failing(
    children: list[multiprocessing.process.BaseProcess],
) -> None:
    watchdog = Watchdog(workers=1, timeout=30, metrics_dir=None)
    workers = {_start(children, lambda: time.sleep(5)) for _ in range(2)}
    _wait_until(lambda: watchdog.watched_pids() == workers)  # both slots taken by live workers

    extra = FORK.Process(target=lambda: (watchdog.started(), watchdog.finished()))
    extra.start()
    extra.join(10)

    assert extra.exitcode == 0
    assert extra.pid not in watchdog.watched_pids()
