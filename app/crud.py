"""Queries on items. Functions take the caller's session and never commit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, delete, select, text, update
from sqlalchemy.orm import Session

from .models import ApiToken, IdempotencyKey, Item

# Reads that only serialize their result fetch plain rows, not ORM objects (no identity
# map, no instance state), with statements built once: a statement built per request costs
# more than the query, as SQLAlchemy derives its cache key from the whole tree every time.
ItemRow = Row[int, str, str | None, datetime, datetime]
_COLUMNS = (Item.id, Item.title, Item.description, Item.created_at, Item.updated_at)
_FIRST_PAGE = select(*_COLUMNS).order_by(Item.id.desc()).limit(bindparam("limit"))
_PAGE_BELOW = _FIRST_PAGE.where(Item.id < bindparam("before_id"))
_ONE = select(*_COLUMNS).where(Item.id == bindparam("item_id"))


def list_items(session: Session, *, limit: int, before_id: int | None = None) -> tuple[Sequence[ItemRow], bool]:
    """Up to ``limit`` items, newest first, below ``before_id`` (keyset pagination).

    Also says whether more items follow, by asking for one row more than needed.
    """
    if before_id is None:
        rows = session.execute(_FIRST_PAGE, {"limit": limit + 1}).all()
    else:
        rows = session.execute(_PAGE_BELOW, {"limit": limit + 1, "before_id": before_id}).all()
    return rows[:limit], len(rows) > limit


def read_item(session: Session, item_id: int) -> ItemRow | None:
    """An item's values, to return them; ``get_item`` for one to change."""
    return session.execute(_ONE, {"item_id": item_id}).first()


def get_item(session: Session, item_id: int) -> Item | None:
    return session.get(Item, item_id)


def create_item(session: Session, *, title: str, description: str | None) -> Item:
    item = Item(title=title, description=description)
    session.add(item)
    session.flush()
    return item


def update_item(session: Session, item: Item, changes: Mapping[str, Any]) -> Item:
    for name, value in changes.items():
        setattr(item, name, value)
    item.updated_at = datetime.now(UTC)
    session.flush()
    return item


def delete_item(session: Session, item_id: int) -> bool:
    """Delete by id in one statement; False if there was no such item."""
    result = session.execute(delete(Item).where(Item.id == item_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def create_token(session: Session, *, name: str, scope: str, key_id: str, token_hash: str) -> ApiToken:
    token = ApiToken(name=name, scope=scope, key_id=key_id, token_hash=token_hash)
    session.add(token)
    session.flush()
    return token


def find_token(session: Session, key_id: str) -> ApiToken | None:
    return session.scalars(select(ApiToken).where(ApiToken.key_id == key_id)).one_or_none()


def list_tokens(session: Session) -> Sequence[ApiToken]:
    return session.scalars(select(ApiToken).order_by(ApiToken.name)).all()


def revoke_token(session: Session, name: str) -> bool:
    """Revoke the named token; False if there is no such active token."""
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


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


def prune_idempotency_keys(session: Session, *, older_than: timedelta) -> int:
    cutoff = datetime.now(UTC) - older_than
    result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at <= cutoff))
    return int(result.rowcount)  # type: ignore[attr-defined]
