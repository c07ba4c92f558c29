"""Expired idempotency keys are pruned by the app itself, piggy-backed on keyed creates.

Keys grow only through ``POST /items`` with an ``Idempotency-Key``, so after such a create
each worker process prunes at most once per ``IDEMPOTENCY_PRUNE_INTERVAL_SECONDS`` (its
first keyed create included). A PostgreSQL advisory lock lets one prune run at a time
across every worker and replica: the others skip. The DELETE walks the ``created_at``
index, so a prune with nothing to do is one index probe. A failed prune is logged and
never fails the request; ``flask idempotency prune`` (cron, the Kubernetes CronJob) does
the same on demand.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from flask import Flask, Response, current_app, request
from sqlalchemy.exc import SQLAlchemyError

from . import crud
from .config import Settings
from .db import get_database
from .idempotency import HEADER, TTL

# A fixed pg_advisory_xact_lock id ("idem" "prun" in ASCII), apart from the per-key locks.
PRUNE_LOCK_ID = 0x6964656D7072756E
EXTENSION = "idempotency_prune"

log = logging.getLogger(__name__)


@dataclass
class PruneSchedule:
    interval: float
    next_at: float = 0.0  # time.monotonic(); 0: the first keyed create prunes

    def due(self) -> bool:
        now = time.monotonic()
        if now < self.next_at:
            return False
        self.next_at = now + self.interval
        return True


def prune_expired_keys() -> int | None:
    """Delete keys past their lifetime; None when another process is pruning right now."""
    with get_database().sessionmaker.begin() as session:
        if not crud.idempotency.try_lock_idempotency_key(session, PRUNE_LOCK_ID):
            return None
        return crud.idempotency.prune_idempotency_keys(session, older_than=TTL)


def _after_keyed_create(response: Response) -> Response:
    if response.status_code != 201 or request.endpoint != "items.create_item" or HEADER not in request.headers:
        return response
    schedule: PruneSchedule = current_app.extensions[EXTENSION]
    if schedule.due():
        try:
            pruned = prune_expired_keys()
        except SQLAlchemyError as exc:
            log.warning("idempotency key prune failed: %s", type(exc).__name__)
        else:
            if pruned:
                log.info("pruned %d expired idempotency key(s)", pruned)
    return response


def init_app(app: Flask, settings: Settings) -> None:
    if settings.idempotency_prune_interval_seconds:
        app.extensions[EXTENSION] = PruneSchedule(float(settings.idempotency_prune_interval_seconds))
        app.after_request(_after_keyed_create)
