"""Shutdown state shared by the server process and its forked workers.

The flag lives in anonymous shared memory created at import. The server (app/server.py)
builds the app before forking its workers, so its "draining" is seen by every worker:
readiness then answers 503 and load balancers move away while in-flight requests finish.
"""

from __future__ import annotations

import ctypes
import multiprocessing

_draining = multiprocessing.RawValue(ctypes.c_bool, False)


def start_draining() -> None:
    _draining.value = True


def is_draining() -> bool:
    return bool(_draining.value)
