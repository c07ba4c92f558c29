"""Queries on stored idempotency keys and their responses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from ..models import IdempotencyKey


def try_lock_idempotency_key(session: Session, lock_id: int) -> bool:
    """Take a transaction-scoped lock on a key; False if another request holds it.

    PostgreSQL only (advisory locks). SQLite has a single writer, so a second
    request simply waits for the first and then sees its stored outcome.
    """
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": lock_id}))


def find_idempotency_key(session: Session, principal: str, key: str, *, newer_than: datetime) -> IdempotencyKey | None:
    return session.scalars(
        select(IdempotencyKey).where(
            IdempotencyKey.principal == principal,
            IdempotencyKey.key == key,
            IdempotencyKey.created_at > newer_than,
        )
    ).one_or_none()


def save_idempotency_key(session: Session, record: IdempotencyKey) -> None:
    # An expired record of the same key may still be there until pruned: replace it.
    session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.principal == record.principal, IdempotencyKey.key == record.key)
    )
    session.add(record)
    session.flush()


def prune_idempotency_keys(session: Session, *, older_than: timedelta, batch: int | None = None) -> int:
    """Delete keys older than ``older_than`` (oldest first, at most ``batch`` of them); how many."""
    cutoff = datetime.now(UTC) - older_than
    expired = select(IdempotencyKey.id).where(IdempotencyKey.created_at <= cutoff)
    if batch is not None:
        expired = expired.order_by(IdempotencyKey.created_at).limit(batch)
    result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(expired.scalar_subquery())))
    return int(result.rowcount)  # type: ignore[attr-defined]
