"""The items resource."""

from __future__ import annotations

from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

from .. import crud, idempotency, idempotency_prune
from ..auth import require_scope
from ..db import get_session, read, write_alone
from ..models import Item
from ..observability.metrics import count_item_created
from ..openapi import operation
from ..schemas import (
    MAX_ID,
    ItemIn,
    ItemOut,
    ItemPage,
    ItemPatch,
    ItemValues,
    ListQuery,
    dumps,
    encode_cursor,
    item_document,
)

bp = Blueprint("items", __name__, url_prefix="/items")

BODY_ERRORS = (400, 413, 415, 422)
T = TypeVar("T")


def item_not_found(item_id: int) -> NotFound:
    return NotFound(f"Item {item_id} does not exist.")


class ItemIdConverter(IntegerConverter):
    """``<item_id:...>``: an item id as the database can hold it; a larger one is an item that does not exist."""

    openapi_schema: dict[str, Any] = {"type": "integer", "minimum": 1}  # noqa: RUF012 (read-only)

    def to_python(self, value: str) -> int:
        item_id = int(super().to_python(value))
        if item_id > MAX_ID:
            raise item_not_found(item_id)
        return item_id


def _or_404(found: T | None, item_id: int) -> T:
    if found is None or found is False:
        raise item_not_found(item_id)
    return found


def _dump(item: Item) -> dict[str, object]:
    return ItemOut.model_validate(item).model_dump(mode="json")


def _json(document: dict[str, object]) -> Response:
    return current_app.response_class(dumps(document), mimetype="application/json")


@bp.get("")
@require_scope("read")
@operation("List items, newest first", query=ListQuery, responses={200: ItemPage}, errors=(422,), tags=("items",))
def list_items(query: ListQuery) -> ResponseReturnValue:
    items, more = read(lambda reader: crud.items.list_items(reader, limit=query.limit, before_id=query.before_id))
    next_cursor = encode_cursor(items[-1][0]) if more else None
    return _json({"items": [item_document(values) for values in items], "next_cursor": next_cursor})


@bp.post("")
@require_scope("write")
@operation(
    "Create an item",
    body=ItemIn,
    responses={201: ItemOut},
    errors=(409, *BODY_ERRORS),
    headers={201: {"Location": "URL of the new item."}},
    parameters=(idempotency.OPENAPI_PARAMETER,),
    tags=("items",),
)
def create_item(body: ItemIn) -> ResponseReturnValue:
    title, description = body.title, body.description
    if not idempotency.requested():
        # One INSERT ... RETURNING, atomic on its own: no session, no transaction.
        created = item_document(
            write_alone(lambda writer: crud.items.create_item(writer, title=title, description=description))
        )
        return _created(created, _location(created))
    session = get_session()
    claim = idempotency.claim(session)
    if claim is not None and claim.replay is not None:
        return claim.replay
    created = item_document(crud.items.create_item(session, title=title, description=description))
    location = _location(created)
    if claim is not None:
        claim.remember(session, 201, created, location)
    session.commit()
    idempotency_prune.after_keyed_create()
    return _created(created, location)


def _location(created: dict[str, object]) -> str:
    return url_for("items.get_item", item_id=created["id"])


def _created(created: dict[str, object], location: str) -> ResponseReturnValue:
    count_item_created()
    return _json(created), 201, {"Location": location}


@bp.get("/<item_id:item_id>")
@require_scope("read")
@operation("Get an item", responses={200: ItemOut}, errors=(404,), tags=("items",))
def get_item(item_id: int) -> ResponseReturnValue:
    values: ItemValues | None = read(lambda reader: crud.items.read_item(reader, item_id))
    return _json(item_document(_or_404(values, item_id)))


@bp.patch("/<item_id:item_id>")
@require_scope("write")
@operation(
    "Change some fields of an item",
    body=ItemPatch,
    responses={200: ItemOut},
    errors=(404, *BODY_ERRORS),
    tags=("items",),
)
def update_item(item_id: int, body: ItemPatch) -> ResponseReturnValue:
    session = get_session()
    item = crud.items.update_item(session, _or_404(crud.items.get_item(session, item_id), item_id), body.changes())
    session.commit()
    return _dump(item)


@bp.delete("/<item_id:item_id>")
@require_scope("write")
@operation("Delete an item", responses={204: None}, errors=(404,), tags=("items",))
def delete_item(item_id: int) -> ResponseReturnValue:
    session = get_session()
    _or_404(crud.items.delete_item(session, item_id), item_id)
    session.commit()
    return "", 204
