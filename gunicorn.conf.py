"""Production server settings (gunicorn): the app's own Settings (app/config.py).

Run: gunicorn --config gunicorn.conf.py "app.main:create_app()"
"""

import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gunicorn.glogging import Logger

from app.config import ConfigError, load_settings
from app.request_limits import SERVER_REQUEST_LINE_LIMIT

if TYPE_CHECKING:
    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker

try:
    _settings = load_settings()
except ConfigError as exc:
    # One line, as gunicorn itself reports an app that fails to load.
    sys.exit(f"Error: {exc}")

# Workers share Prometheus metrics through files in this directory. prometheus_client
# picks its storage when first imported, so it must be in the environment before the
# app loads. Unset: a private directory, in /dev/shm (RAM) when there is one.
_shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
_metrics_dir = _settings.metrics_dir or Path(tempfile.mkdtemp(prefix="items-api-metrics-", dir=_shm))
_metrics_dir.mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)

# All interfaces: inside a container; the reverse proxy is the public edge.
bind = f"0.0.0.0:{_settings.port}"
workers = _settings.web_concurrency
threads = _settings.gunicorn_threads
timeout = _settings.gunicorn_timeout
# Must stay below the container's stop grace period, so SIGTERM drains in-flight requests.
graceful_timeout = _settings.gunicorn_graceful_timeout
keepalive = _settings.gunicorn_keepalive
forwarded_allow_ips = _settings.forwarded_allow_ips
# Build the app once in the master: a config error stops start-up with one clear message,
# and workers fork with the code already imported.
preload_app = True
worker_tmp_dir = "/dev/shm"  # noqa: S108 (heartbeat files; /dev/shm avoids disk stalls)
# The app logs one line per request itself (app/observability/access.py).
accesslog = None
# Bounded request line and header block: gunicorn's parser copies its buffer on every
# read, so an unbounded line costs CPU with the square of its length (16 MiB: 18 s) and
# memory about 4x. Query strings the app parses are capped lower (MAX_QUERY_STRING_BYTES,
# a problem+json 414); only a line over this limit gets gunicorn's own (HTML) 414.
limit_request_line = SERVER_REQUEST_LINE_LIMIT
limit_request_field_size = SERVER_REQUEST_LINE_LIMIT
# At most 64 header lines of 8 KiB: a header block of at most about 512 KiB (then 400).
limit_request_fields = 64
errorlog = "-"


class AppLogger(Logger):
    """gunicorn's logger, without its access log: the app writes one line per request itself.

    With ``logconfig_dict`` set, gunicorn builds its access-log fields for every request
    even though no handler takes them (about 8 % of a worker's CPU on ``/health``).
    """

    def access(self, resp: object, req: object, environ: object, request_time: object) -> None:
        return None


logger_class = AppLogger
# gunicorn's own lines go through the app's handler: one format (JSON in production) on stdout.
logconfig_dict = {
    "root": {"level": _settings.log_level, "handlers": ["app"]},
    "loggers": {
        "gunicorn.error": {"level": _settings.log_level, "handlers": [], "propagate": True},
        "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        # Alembic announces its plugins at INFO when the app is imported: noise at every start.
        "alembic.runtime.plugins": {"level": "WARNING"},
    },
    "handlers": {"app": {"()": "app.observability.logs.stdout_handler", "log_format": _settings.log_format}},
}
# No runtime control socket: it would be written under $HOME, which a read-only,
# non-root container does not have; operators manage the server with signals.
control_socket_disable = True


def on_starting(server: "Arbiter") -> None:
    """Start the metrics from zero: files left by an earlier run would be added to this one's."""
    for stale in _metrics_dir.glob("*.db"):
        stale.unlink()


def pre_fork(server: "Arbiter", worker: "Worker") -> None:
    """Keep the preloaded app's objects shared with the workers: out of the garbage collector's reach.

    A full collection in a worker writes to every object it tracks, which copies each page
    of the app's imported objects into that worker (measured: private memory per worker
    16 -> 40 MB about three minutes into a load). Frozen objects are never collected
    (Python's ``gc.freeze``, documented for this use: call it right before fork).
    """
    gc.freeze()


def child_exit(server: "Arbiter", worker: "Worker") -> None:
    """Drop a dead worker's share of the "live" gauges (its counters stay in the totals)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(_metrics_dir))


def when_ready(server: "Arbiter") -> None:
    """On SIGTERM, first drain: readiness answers 503 while requests are still served.

    Load balancers (Caddy's health checks, Kubernetes readiness) then stop sending new
    requests before gunicorn's graceful stop, which finishes those in flight.
    """
    graceful_stop = server.handle_term

    def drain_then_stop() -> None:
        from app.lifecycle import start_draining

        start_draining()
        server.log.info("SIGTERM: draining for %s s before the graceful stop", _settings.shutdown_drain_seconds)
        time.sleep(_settings.shutdown_drain_seconds)
        graceful_stop()

    server.handle_term = drain_then_stop  # type: ignore[method-assign]


def on_exit(server: "Arbiter") -> None:
    if _settings.metrics_dir is None:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
