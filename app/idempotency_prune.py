"""Expired idempotency keys are pruned by the app itself, piggy-backed on keyed creates.

Keys grow only through ``POST /items`` with an ``Idempotency-Key``, so after such a create
a worker considers a prune at most once per ``IDEMPOTENCY_PRUNE_INTERVAL_SECONDS`` (its
first keyed create included). With Redis (``REDIS_URL``, required in production) the
first worker of any replica to claim the interval (``SET NX EX``) prunes and the others
skip: at most one prune per interval across every worker and replica. Without Redis, or
while it fails, each worker prunes on its own schedule. Either way a PostgreSQL advisory
lock lets one prune run at a time, and the DELETE walks the ``created_at`` index, so a
prune with nothing to do is one index probe. A failed prune is logged and never fails the
request; ``flask idempotency prune`` (cron, the Kubernetes CronJob) does the same on demand.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis
from flask import Flask, Response, after_this_request, current_app
from sqlalchemy.exc import SQLAlchemyError

from . import crud
from .config import Settings
from .db import get_database
from .idempotency import TTL

# A fixed pg_advisory_xact_lock id ("idem" "prun" in ASCII), apart from the per-key locks.
PRUNE_LOCK_ID = 0x6964656D7072756E
EXTENSION = "idempotency_prune"
# The Redis key whose holder prunes in the current interval.
CLAIM_KEY = "items-api:idempotency-prune"
# Rows per DELETE: a backlog is worked off in short transactions.
PRUNE_BATCH = 1000
REDIS_TIMEOUT_SECONDS = 0.25

log = logging.getLogger(__name__)


@dataclass
class PruneSchedule:
    interval: float
    redis_url: str | None = None
    next_at: float = 0.0  # time.monotonic(); 0: the first keyed create prunes

    def due(self) -> bool:
        """This worker's turn to consider a prune, and (with Redis) nobody's claimed the interval."""
        now = time.monotonic()
        if now < self.next_at:
            return False
        self.next_at = now + self.interval
        return self._claim()

    def _claim(self) -> bool:
        if self.redis_url is None:
            return True
        try:
            client = redis.Redis.from_url(
                self.redis_url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
            )
            with client:
                return bool(client.set(CLAIM_KEY, "1", nx=True, ex=max(1, int(self.interval))))
        except redis.RedisError as exc:
            log.warning("idempotency prune: Redis unavailable (%s); pruning on this worker's schedule", exc)
            return True


def prune_expired_keys() -> int | None:
    """Delete keys past their lifetime; None when another process is pruning right now.

    In batches of ``PRUNE_BATCH``, each its own short transaction under the advisory
    lock, so a large backlog never runs into the statement timeout and never holds
    locks for long.
    """
    database = get_database()
    pruned = 0
    while True:
        with database.sessionmaker.begin() as session:
            if not crud.idempotency.try_lock_idempotency_key(session, PRUNE_LOCK_ID):
                return None if pruned == 0 else pruned
            deleted = crud.idempotency.prune_idempotency_keys(session, older_than=TTL, batch=PRUNE_BATCH)
        pruned += deleted
        if deleted < PRUNE_BATCH:
            return pruned


def _prune_logged(app: Flask) -> None:
    with app.app_context():
        try:
            pruned = prune_expired_keys()
        except SQLAlchemyError as exc:
            log.warning("idempotency key prune failed: %s", type(exc).__name__)
        else:
            if pruned:
                log.info("pruned %d expired idempotency key(s)", pruned)


def after_keyed_create() -> None:
    """Called by a keyed create that stored its item: prune after the response if it is due.

    The prune runs once the response has gone out (``call_on_close``): the client never
    waits for it.
    """
    schedule: PruneSchedule | None = current_app.extensions.get(EXTENSION)
    if schedule is None or not schedule.due():
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    @after_this_request
    def _prune_when_closed(response: Response) -> Response:
        response.call_on_close(lambda: _prune_logged(app))
        return response


def init_app(app: Flask, settings: Settings) -> None:
    if settings.idempotency_prune_interval_seconds:
        app.extensions[EXTENSION] = PruneSchedule(
            float(settings.idempotency_prune_interval_seconds), settings.redis_url
        )
