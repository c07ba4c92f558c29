"""Load, database faults and a server SIGTERM: nothing acknowledged is lost or duplicated.

Each scenario runs the real production server on a fresh database of the throwaway cluster,
with concurrent writers that record every response, then checks the invariants and adds its
figures to the table printed at the end of the run.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from proofs.reliability.checks import Result, Window, evaluate
from proofs.reliability.conftest import Stack, table
from proofs.reliability.load import Attempt, Load
from tests.support.postgres import Cluster
from tests.support.proxy import LinkProxy
from tests.support.server import DRAIN_SECONDS, GRACEFUL_TIMEOUT_SECONDS, status

STEADY_SECONDS = 30
WARMUP_SECONDS = 2
AFTER_FAULT_SECONDS = 4
CRASH_DOWN_SECONDS = 1.0
CUT_SECONDS = 3.0
LOCK_WAIT_SECONDS = 0.8
LOCK_HOLD_SECONDS = 1.0

StackFactory = Callable[..., Stack]


def _finish(stack: Stack, load: Load, window: Window | None, results: list[Result], name: str) -> Result:
    result = evaluate(name, load, load.rows(stack.dsn), window)
    # Times in the dump count from the fault's start (or the load's), for post-mortems.
    load.dump(stack.server.workdir / "attempts.jsonl", window.start if window else load.started)
    statuses = collections.Counter(a.status or a.error for a in load.attempts)
    result.notes["responses"] = dict(sorted(statuses.items(), key=str))
    if window is not None:
        result.notes["fault window s"] = round(window.end - window.start, 2)
    results.append(result)
    print("\n".join(table([result])))
    return result


def _run_fault(stack: Stack, inject: Callable[[], None], name: str, results: list[Result]) -> Result:
    stack.server.start()
    load = Load(stack.server.port, stack.token, name)
    load.start()
    try:
        time.sleep(WARMUP_SECONDS)
        start = time.monotonic()
        inject()
        window = Window(start, time.monotonic())
        time.sleep(AFTER_FAULT_SECONDS)
    finally:
        load.stop()
    return _finish(stack, load, window, results, name)


@pytest.mark.timeout(90)
def test_steady_load_gives_no_5xx(stack_factory: StackFactory, results: list[Result]) -> None:
    stack = stack_factory("steady")
    stack.server.start()
    load = Load(stack.server.port, stack.token, "steady")
    load.start()
    try:
        time.sleep(STEADY_SECONDS)
    finally:
        load.stop()
    result = _finish(stack, load, None, results, "1 steady load 30 s")

    assert result.violations(responses_expected=True) == []
    assert result.status_503 == 0


@pytest.mark.timeout(60)
def test_a_fast_database_restart_loses_nothing(
    stack_factory: StackFactory, cluster: Cluster, results: list[Result]
) -> None:
    stack = stack_factory("restart")

    result = _run_fault(stack, cluster.restart_fast, "2 db fast restart", results)

    assert result.violations(responses_expected=True) == []


@pytest.mark.timeout(60)
def test_a_database_crash_loses_no_acknowledged_write(
    stack_factory: StackFactory, cluster: Cluster, results: list[Result]
) -> None:
    stack = stack_factory("crash")

    def crash_and_start() -> None:
        cluster.crash()
        time.sleep(CRASH_DOWN_SECONDS)
        cluster.start()

    result = _run_fault(stack, crash_and_start, "3 db crash + start", results)

    assert result.violations(responses_expected=True) == []


@pytest.mark.timeout(60)
def test_a_cut_database_link_loses_nothing(
    stack_factory: StackFactory, cluster: Cluster, results: list[Result]
) -> None:
    proxy = LinkProxy(cluster.port)
    proxy.start()
    try:
        stack = stack_factory("linkcut", db_port=proxy.port)

        def cut_for_a_while() -> None:
            proxy.cut()
            time.sleep(CUT_SECONDS)
            proxy.restore()

        result = _run_fault(stack, cut_for_a_while, "4 db link cut 3 s", results)
    finally:
        proxy.close()

    assert result.violations(responses_expected=True) == []


@pytest.mark.timeout(60)
def test_a_silently_stalled_database_link_only_delays(
    stack_factory: StackFactory, cluster: Cluster, results: list[Result]
) -> None:
    """The quiet kind of partition: no reset, no byte through for 3 s, then the link flows again."""
    proxy = LinkProxy(cluster.port)
    proxy.start()
    try:
        stack = stack_factory("linkstall", db_port=proxy.port)

        def stall_for_a_while() -> None:
            proxy.stall()
            time.sleep(CUT_SECONDS)
            proxy.resume()

        result = _run_fault(stack, stall_for_a_while, "4b db link stalled 3 s", results)
    finally:
        proxy.resume()
        proxy.close()

    assert result.violations(responses_expected=True) == []


def _blocked_inserts(cluster: Cluster, database: str) -> int:
    query = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = %s AND application_name = 'items-api' AND wait_event_type = 'Lock'"
    )
    with cluster.connect(database) as connection:
        row = connection.execute(query, (database,)).fetchone()
    return int(row[0]) if row else 0


class ReadinessProbe:
    """GET /health/ready every 50 ms, as a load balancer would, recording (time, status)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: list[tuple[float, int | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="readiness-probe")

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            t0 = time.monotonic()
            self.seen.append((t0, status(self.port, "/health/ready", timeout=2.0)))

    def __enter__(self) -> ReadinessProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _hold_inserts(cluster: Cluster, stack: Stack, locker: psycopg.Connection[tuple[object, ...]]) -> int:
    """Block INSERTs (reads go on) with a SHARE lock; how many of the workers' inserts then wait."""
    locker.execute("LOCK TABLE items IN SHARE MODE")
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while _blocked_inserts(cluster, stack.database) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    return _blocked_inserts(cluster, stack.database)


@pytest.mark.timeout(90)
def test_sigterm_drains_in_flight_requests(
    stack_factory: StackFactory, cluster: Cluster, results: list[Result]
) -> None:
    """SIGTERM: readiness says 503 for the drain period, then the workers get SIGTERM with
    inserts held in flight by a table lock, finish them, and the server exits 0."""
    stack = stack_factory("sigterm")
    server = stack.server
    server.start()
    load = Load(server.port, stack.token, "sigterm")
    load.start()
    try:
        time.sleep(WARMUP_SECONDS)
        with ReadinessProbe(server.port) as probe, psycopg.connect(stack.dsn) as locker:
            sent = server.terminate()
            stop_at = sent + DRAIN_SECONDS  # when the server passes SIGTERM on to its workers
            time.sleep(max(0.0, stop_at - LOCK_WAIT_SECONDS - time.monotonic()))
            in_flight = _hold_inserts(cluster, stack, locker)
            time.sleep(max(0.0, stop_at + LOCK_HOLD_SECONDS - time.monotonic()))
            locker.rollback()
            exit_code = server.wait(timeout=GRACEFUL_TIMEOUT_SECONDS + 5)
            exited = time.monotonic()
        ready_again = server.start()
        window = Window(sent, ready_again)
        time.sleep(AFTER_FAULT_SECONDS)
    finally:
        load.stop()

    drained = [a for a in load.attempts if a.status == 201 and a.t0 < stop_at < a.t1 < ready_again]
    ready_after_sigterm = collections.Counter(status for t0, status in probe.seen if t0 > sent + 0.01)
    result = _finish(stack, load, window, results, "5 server SIGTERM")
    result.notes.update(
        {
            "inserts held across the workers' SIGTERM": in_flight,
            "completed with 201 after it": len(drained),
            "SIGTERM to exit s": round(exited - sent, 2),
            "exit code": exit_code,
            "/health/ready after SIGTERM": dict(ready_after_sigterm),
        }
    )

    assert exit_code == 0
    assert exited - sent < DRAIN_SECONDS + GRACEFUL_TIMEOUT_SECONDS
    assert in_flight >= 1, "no insert was in flight when the workers got SIGTERM"
    assert len(drained) >= in_flight, "an in-flight request was dropped instead of drained"
    assert ready_after_sigterm[200] == 0, "/health/ready said 200 after SIGTERM"
    assert ready_after_sigterm[503] > 0, "/health/ready never said 503 while draining"
    assert result.violations(responses_expected=False) == []
    _assert_no_response_only_while_down(load.attempts, window)


def _assert_no_response_only_while_down(attempts: list[Attempt], window: Window) -> None:
    late = [a for a in attempts if a.status is None and not window.overlaps(a, grace=0)]
    assert late == []
