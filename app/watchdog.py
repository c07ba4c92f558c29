"""The server's watch over its workers: hung ones killed, dead ones' live gauges dropped.

Each worker process owns a slot in memory shared with the server process (created
before the workers fork): its pid, a heartbeat (a thread of the worker, once a second),
how many requests it has in flight and when one last started or finished. Once a second
the server process looks at every slot:

- a worker is hung when it has requests in flight and none started or finished for
  ``WORKER_TIMEOUT`` seconds (with one thread per worker: a request running longer than
  that, as with gunicorn's sync workers), or when its heartbeat stopped for as long (the
  whole process stuck). It gets SIGKILL, and granian starts a new one in its place
  (``respawn_failed_workers``);
- a worker that is gone (killed, crashed or replaced) has its share of the "live"
  Prometheus gauges removed (``prometheus_client.multiprocess.mark_process_dead``, the
  documented way); its counters stay in the totals.

A request costs two updates of its worker's slot, under a lock of that process.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

SCAN_SECONDS = 1.0


class _Slot(ctypes.Structure):
    _fields_ = (
        ("pid", ctypes.c_int),
        ("in_flight", ctypes.c_int),
        ("moved", ctypes.c_double),  # a request started or finished
        ("beat", ctypes.c_double),
    )


class Watchdog:
    """Slots for ``workers`` processes; ``watch`` wraps a worker's WSGI app, ``scan`` runs in the server."""

    def __init__(
        self, workers: int, timeout: float, metrics_dir: Path | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        # Twice the workers: a replacement may start before the slot of the one it
        # replaces is freed by the next scan.
        self._slots = multiprocessing.RawArray(_Slot, workers * 2)
        self._claim_lock = multiprocessing.Lock()
        self.timeout = timeout
        self.beat_seconds = min(SCAN_SECONDS, timeout / 3)
        self.metrics_dir = metrics_dir
        self.clock = clock
        self._mine: _Slot | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        os.register_at_fork(after_in_child=self._forked)

    # In a worker.

    def _forked(self) -> None:
        """A new worker: its own slot and heartbeat from the start."""
        self._lock = threading.Lock()
        self._mine = None
        slot = self._claim()
        if slot is None:
            return

        def beat() -> None:
            while True:
                slot.beat = self.clock()
                time.sleep(self.beat_seconds)

        threading.Thread(target=beat, name="watchdog-heartbeat", daemon=True).start()

    def _claim(self) -> _Slot | None:
        pid = os.getpid()
        with self._claim_lock:
            for slot in self._slots:
                if slot.pid in (0, pid):
                    slot.pid, slot.in_flight, slot.moved, slot.beat = pid, 0, self.clock(), self.clock()
                    self._mine = slot
                    return slot
        # More processes than slots: not one of the server's workers (or a respawn storm,
        # which granian ends itself). Its requests are served, only not watched.
        log.warning("watchdog: no free slot for process %s; its requests go unwatched", pid)
        return None

    def started(self) -> None:
        slot = self._mine
        if slot is None:
            return
        with self._lock:
            slot.in_flight += 1
            slot.moved = self.clock()

    def finished(self) -> None:
        slot = self._mine
        if slot is None:
            return
        with self._lock:
            slot.in_flight -= 1
            slot.moved = self.clock()

    def watch(self, app: WSGIApplication) -> WSGIApplication:
        """``app`` with each request counted in this worker's slot."""

        def watched(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            self.started()
            try:
                return app(environ, start_response)
            finally:
                self.finished()

        return watched

    # In the server process.

    def watched_pids(self) -> set[int]:
        """The pids of the worker processes that hold a slot."""
        return {slot.pid for slot in self._slots if slot.pid}

    def scan(self) -> None:
        """Kill the hung workers; forget the gone ones (and their live gauges)."""
        now = self.clock()
        for slot in self._slots:
            pid = slot.pid
            if pid == 0:
                continue
            if not _alive(pid):
                self._forget(slot, pid)
            elif (slot.in_flight > 0 and now - slot.moved > self.timeout) or now - slot.beat > self.timeout:
                log.error(
                    "worker %s hung (%s requests in flight, last moved %.0f s ago, heartbeat %.0f s ago): "
                    "killed, a new one takes its place",
                    pid, slot.in_flight, now - slot.moved, now - slot.beat,
                )  # fmt: skip
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                slot.in_flight, slot.beat = 0, now  # not killed twice while it is being reaped

    def _forget(self, slot: _Slot, pid: int) -> None:
        with self._claim_lock:
            slot.pid, slot.in_flight, slot.moved, slot.beat = 0, 0, 0.0, 0.0
        if self.metrics_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]

    def start(self) -> threading.Thread:
        def loop() -> None:
            while not self._stop.wait(SCAN_SECONDS):
                try:
                    self.scan()
                except Exception:  # the watch must outlive any one bad scan
                    log.exception("watchdog scan failed")

        thread = threading.Thread(target=loop, name="watchdog", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")
