"""Queries on items. Functions take the caller's session and never commit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select
from sqlalchemy.orm import Session

from ..db import Query, Reader
from ..models import Item
from ..schemas import ItemValues

# Reads that only serialize their result fetch plain rows with statements built once: no
# ORM execution path, identity map or instance state, and a statement built per request
# would cost more than the query, as SQLAlchemy derives its cache key from the whole tree.
_TABLE = Item.__table__
_COLUMNS = (_TABLE.c.id, _TABLE.c.title, _TABLE.c.description, _TABLE.c.created_at, _TABLE.c.updated_at)
_FIRST_PAGE_STATEMENT = select(*_COLUMNS).order_by(_TABLE.c.id.desc()).limit(bindparam("limit"))
_FIRST_PAGE = Query(_FIRST_PAGE_STATEMENT)
_PAGE_BELOW = Query(_FIRST_PAGE_STATEMENT.where(_TABLE.c.id < bindparam("before_id")))
_ONE = Query(select(*_COLUMNS).where(_TABLE.c.id == bindparam("item_id")))
# The id and timestamps come from the database; one statement, without the ORM's unit of work.
_CREATE = Query(
    insert(cast("Table", _TABLE))
    .values(title=bindparam("title"), description=bindparam("description"))
    .returning(*_COLUMNS)
)


def list_items(reader: Reader, *, limit: int, before_id: int | None = None) -> tuple[Sequence[ItemValues], bool]:
    """Up to ``limit`` items, newest first, below ``before_id`` (keyset pagination).

    Also says whether more items follow, by asking for one row more than needed.
    """
    if before_id is None:
        rows = reader.all(_FIRST_PAGE, {"limit": limit + 1})
    else:
        rows = reader.all(_PAGE_BELOW, {"limit": limit + 1, "before_id": before_id})
    return rows[:limit], len(rows) > limit


def read_item(reader: Reader, item_id: int) -> ItemValues | None:
    """An item's values, to return them; ``get_item`` for one to change."""
    return reader.first(_ONE, {"item_id": item_id})


def get_item(session: Session, item_id: int) -> Item | None:
    return session.get(Item, item_id)


def create_item(writer: Reader | Session, *, title: str, description: str | None) -> ItemValues:
    """Insert an item; its values as stored."""
    params = {"title": title, "description": description}
    if isinstance(writer, Session):
        stored: ItemValues = writer.execute(_CREATE.statement, params).one()
        return stored
    row = writer.first(_CREATE, params)
    if row is None:
        raise RuntimeError("INSERT ... RETURNING returned no row")
    return row


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
