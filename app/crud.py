"""Queries on items. Functions take the caller's session and never commit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .models import Item


def list_items(session: Session, *, limit: int, before_id: int | None = None) -> tuple[Sequence[Item], bool]:
    """Up to ``limit`` items, newest first, below ``before_id`` (keyset pagination).

    Also says whether more items follow, by asking for one row more than needed.
    """
    query = select(Item).order_by(Item.id.desc()).limit(limit + 1)
    if before_id is not None:
        query = query.where(Item.id < before_id)
    rows = session.scalars(query).all()
    return rows[:limit], len(rows) > limit


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
