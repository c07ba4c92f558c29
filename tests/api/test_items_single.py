"""GET, PATCH and DELETE /items/<id>."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from flask.testing import FlaskClient


@pytest.fixture
def item(client: FlaskClient) -> dict[str, Any]:
    body: dict[str, Any] = client.post("/items", json={"title": "original", "description": "first"}).get_json()
    return body


def test_get_missing_item_is_404_problem(client: FlaskClient) -> None:
    response = client.get("/items/987654321")

    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 404


@pytest.mark.parametrize("path", ["/items/0", "/items/9223372036854775808", "/items/" + "9" * 400])
def test_get_item_with_an_id_outside_the_key_range_is_404(client: FlaskClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_patch_changes_only_the_given_field(client: FlaskClient, item: dict[str, Any]) -> None:
    response = client.patch(f"/items/{item['id']}", json={"title": "  renamed  "})

    assert response.status_code == 200
    body = response.get_json()
    assert body["title"] == "renamed"
    assert body["description"] == "first"
    assert body["created_at"] == item["created_at"]
    assert client.get(f"/items/{item['id']}").get_json() == body


def test_patch_sets_a_new_updated_at(client: FlaskClient, item: dict[str, Any]) -> None:
    body = client.patch(f"/items/{item['id']}", json={"description": "second"}).get_json()

    assert datetime.fromisoformat(body["updated_at"]) > datetime.fromisoformat(item["updated_at"])


def test_patch_can_clear_the_description(client: FlaskClient, item: dict[str, Any]) -> None:
    body = client.patch(f"/items/{item['id']}", json={"description": None}).get_json()

    assert body["description"] is None


@pytest.mark.parametrize(
    "payload",
    [{}, {"title": None}, {"title": ""}, {"title": "x" * 201}, {"description": "x" * 5001}, {"id": 9}, {"nope": 1}],
    ids=["empty", "null-title", "empty-title", "long-title", "long-description", "client-id", "unknown-field"],
)
def test_patch_rejects_invalid_changes_with_422_and_keeps_the_item(
    client: FlaskClient, item: dict[str, Any], payload: dict[str, Any]
) -> None:
    response = client.patch(f"/items/{item['id']}", json=payload)

    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert client.get(f"/items/{item['id']}").get_json() == item


def test_patch_missing_item_is_404(client: FlaskClient) -> None:
    assert client.patch("/items/987654321", json={"title": "x"}).status_code == 404


def test_delete_returns_204_then_the_item_is_gone(client: FlaskClient, item: dict[str, Any]) -> None:
    response = client.delete(f"/items/{item['id']}")

    assert response.status_code == 204
    assert response.data == b""
    assert client.get(f"/items/{item['id']}").status_code == 404
    assert client.delete(f"/items/{item['id']}").status_code == 404


def test_delete_missing_item_is_404(client: FlaskClient) -> None:
    assert client.delete("/items/987654321").status_code == 404


@pytest.mark.parametrize("item_id", [987654321, 2**63 - 1, 2**63, 10**30])
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_a_missing_or_out_of_range_id_gets_the_same_404_problem(client: FlaskClient, method: str, item_id: int) -> None:
    response = client.open(f"/items/{item_id}", method=method, json={"title": "x"} if method == "PATCH" else None)

    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert (body["title"], body["detail"]) == ("Not Found", f"Item {item_id} does not exist.")
