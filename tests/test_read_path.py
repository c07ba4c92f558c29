"""The hot paths skip the ORM and pydantic: their JSON is byte for byte what the models write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import URL, select

from app.db import get_database
from app.main import create_app
from app.migrate import upgrade
from app.models import Item
from app.schemas import ItemOut, ItemPage, ItemValues, dumps, encode_cursor, item_document
from tests.conftest import app_config


def _orm_items(app: Flask, limit: int) -> list[Item]:
    with app.app_context():
        session = get_database().sessionmaker()
        try:
            return list(session.scalars(select(Item).order_by(Item.id.desc()).limit(limit)))
        finally:
            session.close()


def _make_items(client: FlaskClient) -> None:
    for n in range(5):
        # Every other one without a description: null must come out alike too.
        body = {"title": f'item {n} é \u2028 "quoted"', "description": None if n % 2 else f"about {n}"}
        assert client.post("/items", json=body).status_code == 201


def test_get_item_is_byte_for_byte_the_orm_objects_json(app: Flask, client: FlaskClient) -> None:
    _make_items(client)
    newest = _orm_items(app, 1)[0]

    response = client.get(f"/items/{newest.id}")

    assert response.status_code == 200
    assert response.data == ItemOut.model_validate(newest).model_dump_json().encode()


def test_list_is_byte_for_byte_the_orm_objects_json(app: Flask, client: FlaskClient) -> None:
    _make_items(client)
    page = _orm_items(app, 3)
    expected = ItemPage(items=[ItemOut.model_validate(item) for item in page], next_cursor=encode_cursor(page[-1].id))

    response = client.get("/items?limit=3")

    assert response.status_code == 200
    assert response.data == expected.model_dump_json().encode()


def test_reads_and_a_create_without_idempotency_key_open_no_orm_session(app: Flask, client: FlaskClient) -> None:
    _make_items(client)
    item_id = _orm_items(app, 1)[0].id
    opened: list[object] = []
    sessions = app.extensions["database"]
    original = sessions.sessionmaker

    def counting() -> object:
        opened.append(1)
        return original()

    sessions.sessionmaker = counting
    anonymous = app.test_client()

    assert anonymous.get(f"/items/{item_id}").status_code == 200
    assert anonymous.get("/items").status_code == 200
    assert anonymous.get("/health/ready").status_code == 200
    assert client.post("/items", json={"title": "one statement"}).status_code == 201
    assert opened == []
    assert client.post("/items", json={"title": "keyed"}, headers={"Idempotency-Key": "k-1"}).status_code == 201
    assert opened == [1]  # a keyed create keeps its transaction (the key and the item together)


@pytest.mark.parametrize(
    "stamp",
    [
        datetime(2026, 12, 4, 22, 45, 35, tzinfo=UTC),  # no fraction: no ".000000"
        datetime(2026, 12, 4, 22, 45, 35, 120, tzinfo=UTC),
        datetime(2026, 12, 4, 23, 45, 35, 5, tzinfo=timezone(timedelta(hours=1))),  # a session time zone
        datetime(2026, 12, 4, 22, 45, 35, 999999),  # SQLite: naive, and UTC
    ],
)
@pytest.mark.parametrize("description", [None, "", 'tab\there, new\nline, CR\r, \u2028 \\ / "é"'])
def test_an_item_document_is_written_as_pydantic_writes_the_model(stamp: datetime, description: str | None) -> None:
    values: ItemValues = (9_223_372_036_854_775_807, "T \u00e9\U0001f600 <b>", description, stamp, stamp)

    written = dumps(item_document(values))

    assert (
        written
        == ItemOut.model_validate(dict(zip(ItemOut.model_fields, values, strict=True))).model_dump_json().encode()
    )


@pytest.mark.postgresql_only
def test_a_read_returns_its_pooled_connection_out_of_autocommit(fresh_database_url: URL) -> None:
    """Reads flip the pool's psycopg connection to autocommit; sessions after them need their transactions."""
    app = create_app(app_config(fresh_database_url, DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0))
    engine = app.extensions["database"].engine
    upgrade(engine)
    try:
        assert app.test_client().get("/items").status_code == 200

        pooled = engine.raw_connection()  # the one connection the read used
        try:
            assert pooled.driver_connection.autocommit is False
        finally:
            pooled.close()
    finally:
        engine.dispose()


@pytest.mark.postgresql_only
@pytest.mark.parametrize(("timeout_ms", "shown"), [("0", "0"), ("5000", "5s")])
def test_postgresql_sessions_run_in_utc_beside_the_statement_timeout(
    fresh_database_url: URL, timeout_ms: str, shown: str
) -> None:
    """Timestamps come back with ``datetime.UTC``: neither psycopg nor the app converts them per value."""
    app = create_app(app_config(fresh_database_url, DB_STATEMENT_TIMEOUT_MS=timeout_ms))
    engine = app.extensions["database"].engine
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW TimeZone").scalar() == "UTC"
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == shown
            assert connection.exec_driver_sql("SELECT now()").scalar().tzinfo is UTC
    finally:
        engine.dispose()
