"""Before any load: the API and the ceiling must give the same answers to the same requests."""

from __future__ import annotations

import json
import urllib.request
from email.message import Message
from typing import Any

PAGE_SIZE = 20


class MismatchError(RuntimeError):
    """The ceiling no longer answers like the API: the comparison would be meaningless."""


def fetch(
    base_url: str, path: str, *, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Message, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base_url + path, data=data, headers=dict(headers or {}))  # noqa: S310
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback, our URL)
        return response.status, response.headers, json.loads(response.read())


def _same(what: str, api: Any, ceiling: Any) -> None:
    if api != ceiling:
        raise MismatchError(f"{what}: the API and the ceiling differ\n  api:     {api!r}\n  ceiling: {ceiling!r}")


def deep_cursor(api_url: str, item_count: int) -> str:
    """Walk the API's pages to about the middle of the data and return that page's cursor."""
    cursor, path = None, f"/items?limit={PAGE_SIZE}"
    for _ in range(max(1, item_count // PAGE_SIZE // 2)):
        _, _, page = fetch(api_url, path)
        cursor = page["next_cursor"]
        if cursor is None:
            break
        path = f"/items?limit={PAGE_SIZE}&cursor={cursor}"
    if cursor is None:
        raise MismatchError("the API's pages ended before the middle of the seeded items")
    return str(cursor)


def check_same_answers(api_url: str, ceiling_url: str, *, deep: str, item_id: int, api_headers: dict[str, str]) -> None:
    """Compare the benchmarked reads byte for byte (as JSON) and the shape of a created item."""
    for path in ("/health", f"/items?limit={PAGE_SIZE}", f"/items?limit={PAGE_SIZE}&cursor={deep}"):
        api, ceiling = fetch(api_url, path), fetch(ceiling_url, path)
        _same(f"GET {path} status", api[0], ceiling[0])
        if path != "/health":  # the environment name is the API's own business
            _same(f"GET {path} body", api[2], ceiling[2])
    api, ceiling = fetch(api_url, f"/items/{item_id}"), fetch(ceiling_url, f"/items/{item_id}")
    _same(f"GET /items/{item_id}", (api[0], api[2]), (ceiling[0], ceiling[2]))

    body = {"title": "  Preflight item  ", "description": "Created by the benchmark's preflight check."}
    api = fetch(api_url, "/items", body=body, headers=api_headers)
    ceiling = fetch(ceiling_url, "/items", body=body)
    _same("POST /items status", api[0], ceiling[0])
    _same("POST /items fields", sorted(api[2]), sorted(ceiling[2]))
    _same(
        "POST /items stored values",
        (api[2]["title"], api[2]["description"]),
        (ceiling[2]["title"], ceiling[2]["description"]),
    )
    for response in (api, ceiling):
        if response[1].get("Location") != f"/items/{response[2]['id']}":
            raise MismatchError(f"POST /items Location header: {response[1].get('Location')!r}")
        if not str(response[2]["created_at"]).endswith("Z"):
            raise MismatchError(f"created_at is not RFC 3339 UTC with Z: {response[2]['created_at']!r}")
