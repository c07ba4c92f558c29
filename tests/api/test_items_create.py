"""POST /items."""

from __future__ import annotations

from datetime import datetime

import pytest
from flask.testing import FlaskClient


def _is_rfc3339_utc(value: str) -> bool:
    return value.endswith("Z") and datetime.fromisoformat(value).utcoffset() is not None


def test_create_item_returns_201_with_the_item_and_its_location(client: FlaskClient) -> None:
    response = client.post("/items", json={"title": "Example item", "description": "Created via Flask API"})

    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"id", "title", "description", "created_at", "updated_at"}
    assert isinstance(body["id"], int)
    assert body["title"] == "Example item"
    assert body["description"] == "Created via Flask API"
    assert _is_rfc3339_utc(body["created_at"])
    assert _is_rfc3339_utc(body["updated_at"])
    assert response.headers["Location"] == f"/items/{body['id']}"


def test_created_item_can_be_read_back(client: FlaskClient) -> None:
    created = client.post("/items", json={"title": "Read me"}).get_json()

    fetched = client.get(f"/items/{created['id']}")

    assert fetched.status_code == 200
    assert fetched.get_json() == created


def test_create_item_strips_surrounding_whitespace_from_the_title(client: FlaskClient) -> None:
    body = client.post("/items", json={"title": "  padded \t"}).get_json()

    assert body["title"] == "padded"


def test_create_item_keeps_the_description_byte_for_byte(client: FlaskClient) -> None:
    description = "  line one\n\tline two  — naïve café 🚀 ‮ "

    body = client.post("/items", json={"title": "t", "description": description}).get_json()

    assert client.get(f"/items/{body['id']}").get_json()["description"] == description


@pytest.mark.parametrize("description", [None, "x" * 5000], ids=["null", "5000-chars"])
def test_create_item_accepts_a_description_that_is_null_or_at_the_limit(
    client: FlaskClient, description: str | None
) -> None:
    response = client.post("/items", json={"title": "t", "description": description})

    assert response.status_code == 201
    assert response.get_json()["description"] == description


def test_create_item_without_a_description_stores_null(client: FlaskClient) -> None:
    assert client.post("/items", json={"title": "t"}).get_json()["description"] is None


@pytest.mark.parametrize(
    "title", ["a", "é" * 200, "  " + "x" * 200 + "  "], ids=["one-char", "200-multibyte", "200-padded"]
)
def test_create_item_accepts_titles_of_1_to_200_characters(client: FlaskClient, title: str) -> None:
    response = client.post("/items", json={"title": title})

    assert response.status_code == 201
    assert response.get_json()["title"] == title.strip()


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        ({}, ["body", "title"]),
        ({"title": ""}, ["body", "title"]),
        ({"title": "   "}, ["body", "title"]),
        ({"title": "x" * 201}, ["body", "title"]),
        ({"title": None}, ["body", "title"]),
        ({"title": 42}, ["body", "title"]),
        ({"title": ["a"]}, ["body", "title"]),
        ({"title": "line\nbreak"}, ["body", "title"]),
        ({"title": "t", "description": "x" * 5001}, ["body", "description"]),
        ({"title": "t", "description": 7}, ["body", "description"]),
        ({"title": "t", "description": "nul\x00byte"}, ["body", "description"]),
        ({"title": "t", "id": 5}, ["body", "id"]),
        ({"title": "t", "created_at": "2020-01-01T00:00:00Z"}, ["body", "created_at"]),
        ({"title": "t", "updated_at": "2020-01-01T00:00:00Z"}, ["body", "updated_at"]),
        ({"title": "t", "owner": "me"}, ["body", "owner"]),
    ],
    ids=[
        "missing-title",
        "empty-title",
        "blank-title",
        "title-201-chars",
        "null-title",
        "number-title",
        "list-title",
        "newline-in-title",
        "description-5001-chars",
        "number-description",
        "nul-in-description",
        "client-id",
        "client-created_at",
        "client-updated_at",
        "unknown-field",
    ],
)
def test_create_item_rejects_invalid_payloads_with_422(client: FlaskClient, payload: object, loc: list[str]) -> None:
    response = client.post("/items", json=payload)

    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == 422
    assert loc in [error["loc"] for error in problem["errors"]]
    assert all(isinstance(error["msg"], str) and error["msg"] for error in problem["errors"])


def test_rejected_create_stores_nothing(client: FlaskClient) -> None:
    client.post("/items", json={"title": "t", "id": 1})

    assert client.get("/items").get_json()["items"] == []
