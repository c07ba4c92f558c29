"""GET /items: newest first, keyset pagination with an opaque cursor."""

from __future__ import annotations

import base64

import pytest
from flask.testing import FlaskClient
from sqlalchemy import URL, create_engine, insert

from app.models import Item


def _create(client: FlaskClient, count: int) -> list[int]:
    return [client.post("/items", json={"title": f"item {n}"}).get_json()["id"] for n in range(count)]


def _walk(client: FlaskClient, limit: int) -> list[list[int]]:
    pages, cursor = [], None
    while True:
        query = f"/items?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(query).get_json()
        pages.append([item["id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def test_list_is_empty_with_no_cursor_when_there_are_no_items(client: FlaskClient) -> None:
    response = client.get("/items")

    assert response.status_code == 200
    assert response.get_json() == {"items": [], "next_cursor": None}


def test_list_returns_newest_first(client: FlaskClient) -> None:
    ids = _create(client, 3)

    listed = [item["id"] for item in client.get("/items").get_json()["items"]]

    assert listed == sorted(ids, reverse=True)


def test_list_items_have_the_item_shape(client: FlaskClient) -> None:
    created = client.post("/items", json={"title": "shape", "description": "d"}).get_json()

    assert client.get("/items").get_json()["items"] == [created]


def test_list_defaults_to_20_items_per_page(client: FlaskClient) -> None:
    _create(client, 21)

    body = client.get("/items").get_json()

    assert len(body["items"]) == 20
    assert body["next_cursor"] is not None


def test_list_honours_limit_from_1_to_100(client: FlaskClient) -> None:
    _create(client, 101)

    assert len(client.get("/items?limit=1").get_json()["items"]) == 1
    assert len(client.get("/items?limit=100").get_json()["items"]) == 100


def test_walking_every_page_returns_each_item_exactly_once_in_order(client: FlaskClient) -> None:
    ids = _create(client, 23)

    pages = _walk(client, limit=5)

    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    assert [item_id for page in pages for item_id in page] == sorted(ids, reverse=True)


def test_last_page_that_is_exactly_full_has_no_next_cursor(client: FlaskClient) -> None:
    _create(client, 4)

    pages = _walk(client, limit=2)

    assert [len(page) for page in pages] == [2, 2]


def test_pagination_skips_nothing_and_repeats_nothing_while_another_connection_inserts(
    live_client: FlaskClient, fresh_database_url: URL
) -> None:
    client = live_client
    original = _create(client, 12)
    other = create_engine(fresh_database_url)
    seen: list[int] = []
    cursor = None
    try:
        while True:
            query = "/items?limit=5" + (f"&cursor={cursor}" if cursor else "")
            body = client.get(query).get_json()
            seen += [item["id"] for item in body["items"]]
            # Another client commits new items between every two pages.
            with other.begin() as connection:
                connection.execute(insert(Item), [{"title": "concurrent"}, {"title": "concurrent"}])
            cursor = body["next_cursor"]
            if cursor is None:
                break
    finally:
        other.dispose()

    assert len(seen) == len(set(seen))
    assert [item_id for item_id in seen if item_id in original] == sorted(original, reverse=True)


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=abc",
        "limit=1.5",
        "limit=",
        "limit=%EF%BC%95",  # a full-width digit five
        "limit=99999999999999999999999999",
        "limit=5&limit=6",
        "cursor=",
        "cursor=not-a-cursor",
        "cursor=%00",
        "cursor=" + base64.urlsafe_b64encode(b"id:-5").decode(),
        "cursor=" + base64.urlsafe_b64encode(b"id:0").decode(),
        "cursor=" + base64.urlsafe_b64encode(b"id:99999999999999999999").decode(),
        "cursor=" + base64.urlsafe_b64encode(b"' OR 1=1 --").decode(),
        "cursor=" + "A" * 4000,
        "cursor=a&cursor=b",
    ],
)
def test_list_rejects_a_bad_limit_or_cursor_with_422(client: FlaskClient, query: str) -> None:
    response = client.get(f"/items?{query}")

    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["errors"][0]["loc"][0] == "query"


def test_list_ignores_unknown_query_parameters(client: FlaskClient) -> None:
    assert client.get("/items?utm_source=x").status_code == 200
