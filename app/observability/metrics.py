"""Prometheus metrics and ``GET /metrics``, right with one process or many (the server's workers).

With ``PROMETHEUS_MULTIPROC_DIR`` set (app/server.py sets it before the app loads)
each worker writes its values to files there, and a scrape, whichever worker answers
it, adds up the files of all workers, dead ones included for counters.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from flask import Blueprint, Flask, Response, abort, current_app, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import QueuePool

from .. import __version__
from ..config import Settings
from ..db import Database

# Set by every reverse proxy (Caddy, ingress controllers); Prometheus sends neither.
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded")
# Fine steps from 1 ms to 500 ms, where this API's answers and its p99 alert live.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

log = logging.getLogger(__name__)


class Metrics:
    """The app's metrics, in a registry of its own (so apps built by tests start from zero)."""

    def __init__(self, metrics_dir: Path | None, at_scrape: ScrapeTimeCollector) -> None:
        self.registry = registry = CollectorRegistry()
        self.metrics_dir = metrics_dir
        self.at_scrape = at_scrape
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ("method", "route", "status"),
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.items_created = Counter("items_created", "Items created through the API.", registry=registry)
        # livesum: the pools of the live workers added up; a dead worker's share is dropped.
        self.pool_in_use = Gauge(
            "db_pool_connections_in_use",
            "Database connections checked out of the connection pools.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.pool_size = Gauge(
            "db_pool_size",
            "Connections the pools keep open (DB_POOL_SIZE per worker; overflow not counted).",
            multiprocess_mode="livesum",
            registry=registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        # The labelled children, looked up once per (method, route, status): label values are
        # bounded (known methods, route templates, status codes), so the dict is too.
        children = self._children.get((method, route, status))
        if children is None:
            children = (self.requests.labels(method, route, str(status)), self.duration.labels(method, route))
            self._children[method, route, status] = children
        children[0].inc()
        children[1].observe(seconds)

    def scrape(self) -> bytes:
        """The text exposition: this process's metrics, or all workers' from their files."""
        registry = CollectorRegistry()
        if self.metrics_dir is None:
            registry.register(self.registry)
        else:
            MultiProcessCollector(registry, path=str(self.metrics_dir))  # type: ignore[no-untyped-call]
        registry.register(self.at_scrape)
        return generate_latest(registry)


class ScrapeTimeCollector:
    """Values the answering process measures during the scrape: build info, database readiness."""

    def __init__(self, engine: Engine, git_sha: str) -> None:
        self.engine = engine
        self.git_sha = git_sha

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            "items_api_build_info", "The running code: version and git commit. Always 1.", labels=("version", "git_sha")
        )
        info.add_metric((__version__, self.git_sha), 1)
        yield info
        yield GaugeMetricFamily(
            "db_ready", "1 if the database answered SELECT 1 during this scrape, else 0.", value=self._ready()
        )

    def _ready(self) -> int:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            log.warning("database not ready", extra={"error": type(exc).__name__})
            return 0
        return 1


def _watch_pool(engine: Engine, metrics: Metrics) -> None:
    """Keep the pool gauges current (each worker its own pool).

    In use: on every checkout and checkin. The size is fixed per pool: written when the
    pool opens a connection (a worker's first ones, a recycle), not on every request.
    """

    def connected(*_: object) -> None:
        pool = engine.pool
        if isinstance(pool, QueuePool):
            metrics.pool_size.set(pool.size())

    def checked_out(*_: object) -> None:
        pool = engine.pool
        if isinstance(pool, QueuePool):
            metrics.pool_in_use.set(pool.checkedout())

    def checked_in(*_: object) -> None:
        pool = engine.pool
        if isinstance(pool, QueuePool):
            # The event fires before the connection is back in the queue: it still counts as out.
            metrics.pool_in_use.set(max(pool.checkedout() - 1, 0))

    event.listen(engine, "connect", connected)
    event.listen(engine, "checkout", checked_out)
    event.listen(engine, "checkin", checked_in)


bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape() -> Response:
    """Prometheus text format, for Prometheus scraping on the internal network."""
    if any(header in request.headers for header in PROXY_HEADERS):
        # Came through a proxy, so maybe from the internet: the proxy hides /metrics,
        # and this keeps them hidden should that rule ever be lost.
        abort(404)
    metrics: Metrics = current_app.extensions["metrics"]
    return Response(metrics.scrape(), content_type=CONTENT_TYPE_PLAIN_0_0_4)


def count_item_created() -> None:
    metrics: Metrics = current_app.extensions["metrics"]
    metrics.items_created.inc()


def init_app(app: Flask, settings: Settings) -> Metrics:
    database: Database = app.extensions["database"]
    metrics = Metrics(settings.metrics_dir, ScrapeTimeCollector(database.engine, settings.git_sha))
    app.extensions["metrics"] = metrics
    _watch_pool(database.engine, metrics)
    app.register_blueprint(bp)
    return metrics
