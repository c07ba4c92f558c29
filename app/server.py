"""The production server: granian's WSGI workers, forked from a process that built the app once.

Run: ``python -m app.server`` (the image's command). Settings are the app's own
(app/config.py): ``PORT``, ``WEB_CONCURRENCY`` workers of ``SERVER_THREADS`` threads,
``WORKER_TIMEOUT``, ``GRACEFUL_TIMEOUT``, ``KEEPALIVE_SECONDS``, ``SHUTDOWN_DRAIN_SECONDS``.

granian parses HTTP in Rust and keeps connections alive: per request it costs a fraction
of gunicorn's sync worker (docs/performance.md). What a production server owes beyond
that is here:

- the app is built once, here: a configuration error stops start-up with one line, and
  the workers fork with everything imported, its objects frozen out of the garbage
  collector's reach so the pages stay shared (``gc.freeze``);
- SIGTERM drains first: readiness answers 503 for ``SHUTDOWN_DRAIN_SECONDS`` while
  requests are still served, then granian stops its workers, which finish what is in
  flight (killed after ``GRACEFUL_TIMEOUT``), and exits 0;
- metrics: stale files of an earlier run are removed before the workers start; the
  watchdog (app/watchdog.py) drops a gone worker's live gauges and kills a hung one,
  which granian replaces;
- at most 100 header lines, and a head (request line and headers) that is not complete
  once ``REQUEST_HEAD_LIMIT`` bytes are read gets a 431 (reads grow to 64 KiB, so a few
  hundred KiB at most are read); a client gets ``KEEPALIVE_SECONDS`` to send them;
- granian's own log lines go through the app's handler: one format (JSON in production).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication
    from granian.server.mp import MPServer

log = logging.getLogger("app.server")

# The request line and all headers together (granian's HTTP/1 buffer): over it, a 431.
# Query strings the app reads are capped lower (MAX_QUERY_STRING_BYTES, a problem+json 414).
REQUEST_HEAD_LIMIT = 64 * 1024

# How long a client has to send its headers when keep-alive is off (KEEPALIVE_SECONDS=0);
# with keep-alive on, KEEPALIVE_SECONDS bounds both that and an idle connection.
HEADERS_TIMEOUT_WITHOUT_KEEPALIVE = 10

_preloaded: WSGIApplication | None = None


def _metrics_dir(settings: Settings) -> tuple[Path, bool]:
    """The directory the workers share metrics through, and whether it is ours to delete.

    prometheus_client picks its storage when first imported, so the variable must be set
    before the app is. Unset: a private directory, in /dev/shm (RAM) when there is one.
    """
    if settings.metrics_dir is not None:
        directory, owned = settings.metrics_dir, False
    else:
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
        directory, owned = Path(tempfile.mkdtemp(prefix="items-api-metrics-", dir=shm)), True
    directory.mkdir(parents=True, exist_ok=True)
    # Files of an earlier run would be added to this one's totals.
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return directory, owned


def logging_config(settings: Settings) -> dict[str, Any]:
    """granian's loggers through the app's one handler (app/observability/logs.py)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": settings.log_level, "handlers": ["app"]},
        "loggers": {
            "_granian": {"level": settings.log_level, "handlers": [], "propagate": True},
            "granian.access": {"level": "WARNING", "handlers": [], "propagate": False},
            # Alembic announces its plugins at INFO when the app is imported: noise at every start.
            "alembic.runtime.plugins": {"level": "WARNING"},
        },
        "handlers": {"app": {"()": "app.observability.logs.stdout_handler", "log_format": settings.log_format}},
    }


def preloaded_app() -> WSGIApplication:
    """granian's target loader, called in each worker: the app the server process built."""
    if _preloaded is None:  # a worker started by "spawn" (not Linux's default) builds its own
        from .main import create_app

        return create_app()
    return _preloaded


def build(settings: Settings, host: str = "0.0.0.0") -> MPServer:  # noqa: S104 (inside a container)
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server.mp import MPServer

    from .main import create_app
    from .watchdog import Watchdog

    global _preloaded
    metrics_dir, owned = _metrics_dir(settings)
    watchdog = Watchdog(settings.web_concurrency, settings.worker_timeout, metrics_dir)
    _preloaded = watchdog.watch(create_app())
    server = MPServer(
        "app.main:create_app",
        address=host,
        port=settings.port,
        interface=Interfaces.WSGI,
        workers=settings.web_concurrency,
        blocking_threads=settings.server_threads,
        http=HTTPModes.http1,
        websockets=False,
        http1_settings=HTTP1Settings(
            header_read_timeout=(settings.keepalive_seconds or HEADERS_TIMEOUT_WITHOUT_KEEPALIVE) * 1000,
            keep_alive=settings.keepalive_seconds > 0,
            max_buffer_size=REQUEST_HEAD_LIMIT,
        ),
        log_level=LogLevels(settings.log_level.lower()),
        log_dictconfig=logging_config(settings),
        respawn_failed_workers=True,
        workers_kill_timeout=settings.graceful_timeout,
    )

    @server.on_startup
    def _started() -> None:
        # granian has installed its signal handlers by now: SIGTERM drains first.
        signal.signal(signal.SIGTERM, lambda *_: _drain_then_stop(server, settings.shutdown_drain_seconds))
        watchdog.start()
        # Right before the workers fork (Python's documented use of gc.freeze): a full
        # collection in a worker would otherwise write to, and so copy, every page of the
        # app's objects (measured with gunicorn: private memory per worker 16 -> 40 MB).
        gc.freeze()

    @server.on_shutdown
    def _stopped() -> None:
        watchdog.stop()
        if owned:
            shutil.rmtree(metrics_dir, ignore_errors=True)

    return server


def _drain_then_stop(server: MPServer, drain_seconds: int) -> None:
    """Readiness answers 503 while requests are still served; then granian's graceful stop."""
    from .lifecycle import start_draining

    start_draining()
    log.info("SIGTERM: draining for %s s before the graceful stop", drain_seconds)
    stop = threading.Timer(drain_seconds, server.signal_handler_interrupt)
    stop.daemon = True  # a stop for another reason meanwhile does not wait for it
    stop.start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.server", description="Serve the API (production).")
    # All interfaces by default: inside a container, behind the reverse proxy (the public edge).
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")  # noqa: S104
    args = parser.parse_args(argv)
    try:
        server = build(load_settings(), args.host)
    except ConfigError as exc:
        sys.exit(f"Error: {exc}")  # one line, as for any other bad setting
    server.serve(target_loader=preloaded_app, wrap_loader=False)


if __name__ == "__main__":
    main()
