"""Every response carries X-Request-ID."""

from __future__ import annotations

import re
import uuid

import pytest
from flask.testing import FlaskClient

from app.request_id import new_request_id


def test_a_sane_client_request_id_is_echoed(client: FlaskClient) -> None:
    response = client.get("/health", headers={"X-Request-ID": "abc-123.DEF:42_x"})

    assert response.headers["X-Request-ID"] == "abc-123.DEF:42_x"


def test_a_request_without_an_id_gets_a_new_one(client: FlaskClient) -> None:
    first = client.get("/health").headers["X-Request-ID"]
    second = client.get("/health").headers["X-Request-ID"]

    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


@pytest.mark.parametrize(
    "incoming",
    ["", "has space", "x" * 129, "<script>", "new\\nline", "ünïcode", "a,b"],
    ids=["empty", "space", "too-long", "markup", "backslash", "non-ascii", "comma"],
)
def test_an_insane_client_request_id_is_replaced(client: FlaskClient, incoming: str) -> None:
    response = client.get("/health", headers={"X-Request-ID": incoming})

    assert response.headers["X-Request-ID"] != incoming
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/items", {}),
        ("POST", "/items", {"json": {"title": "t"}}),
        ("POST", "/items", {"json": {}}),
        ("GET", "/nowhere", {}),
        ("PUT", "/items", {}),
        ("DELETE", "/items/424242", {}),
    ],
)
def test_every_kind_of_response_carries_the_request_id(
    client: FlaskClient, method: str, path: str, kwargs: dict[str, object]
) -> None:
    response = client.open(path, method=method, headers={"X-Request-ID": "trace-me"}, **kwargs)

    assert response.headers["X-Request-ID"] == "trace-me"


def test_a_minted_request_id_is_a_random_uuid4_in_hex() -> None:
    minted = [new_request_id() for _ in range(2000)]

    for request_id in minted:
        parsed = uuid.UUID(hex=request_id)
        assert (parsed.hex, parsed.version, parsed.variant) == (request_id, 4, uuid.RFC_4122)
    assert len(set(minted)) == len(minted)
    # Every other bit is random: each of them is seen both set and clear.
    fixed = {4 * 12 + i for i in range(4)} | {4 * 16, 4 * 16 + 1}  # bit offsets from the left
    seen_set = [any(int(h, 16) >> (127 - bit) & 1 for h in minted) for bit in range(128)]
    seen_clear = [any(not int(h, 16) >> (127 - bit) & 1 for h in minted) for bit in range(128)]
    assert [bit for bit in range(128) if not (seen_set[bit] and seen_clear[bit])] == sorted(fixed)
