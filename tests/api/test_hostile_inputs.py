"""A table of malformed and hostile requests: each gets its 4xx, never a 5xx."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from flask.testing import FlaskClient

JSON = "application/json"


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    status: int
    body: bytes | None = None
    content_type: str | None = JSON
    headers: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("truncated-json", "POST", "/items", 400, b'{"title": "abc'),
    Case("trailing-garbage", "POST", "/items", 400, b'{"title": "a"} x'),
    Case("single-quotes", "POST", "/items", 400, b"{'title': 'a'}"),
    Case("nan", "POST", "/items", 400, b'{"title": NaN}'),
    Case("empty-body", "POST", "/items", 400, b""),
    Case("invalid-utf8", "POST", "/items", 400, b'{"title": "\xff\xfe"}'),
    Case("lone-surrogate-escape", "POST", "/items", 400, b'{"title": "\\ud800"}'),
    Case("utf16-body", "POST", "/items", 400, '{"title": "a"}'.encode("utf-16")),
    Case("bom-prefixed", "POST", "/items", 400, b'\xef\xbb\xbf{"title": "a"}'),
    Case("deeply-nested", "POST", "/items", 400, b"[" * 100_000 + b"]" * 100_000),
    Case("huge-integer-title", "POST", "/items", 400, b'{"title": ' + b"9" * 5000 + b"}"),
    Case("float-title", "POST", "/items", 422, b'{"title": 1e308}'),
    Case("bool-title", "POST", "/items", 422, b'{"title": true}'),
    Case("object-title", "POST", "/items", 422, b'{"title": {"$gt": ""}}'),
    Case("nul-in-title", "POST", "/items", 422, b'{"title": "a\\u0000b"}'),
    Case("escape-in-title", "POST", "/items", 422, b'{"title": "a\\u001b[31mred"}'),
    Case("huge-title", "POST", "/items", 422, b'{"title": "' + b"x" * 100_000 + b'"}'),
    Case("duplicate-keys-invalid-last", "POST", "/items", 422, b'{"title": "ok", "title": ""}'),
    Case("text-plain", "POST", "/items", 415, b'{"title": "a"}', "text/plain"),
    Case("no-content-type", "POST", "/items", 415, b'{"title": "a"}', None),
    Case("json-lookalike-type", "POST", "/items", 415, b'{"title": "a"}', "application/jsonp"),
    Case("multipart", "POST", "/items", 415, b"--x\r\n\r\n--x--", "multipart/form-data; boundary=x"),
    Case("patch-truncated", "PATCH", "/items/1", 400, b'{"title"'),
    Case("path-traversal", "GET", "/items/..%2F..%2Fetc%2Fpasswd", 404),
    Case("path-traversal-dots", "GET", "/items/../../etc/passwd", 404),
    Case("negative-id", "GET", "/items/-1", 404),
    Case("id-with-sql", "GET", "/items/1;DROP TABLE items", 404),
    Case("id-float", "DELETE", "/items/1.5", 404),
    Case("id-overflow", "PATCH", "/items/99999999999999999999", 404, b'{"title": "a"}'),
    Case("id-unicode-digits", "GET", "/items/%D9%A3", 404),
    Case("limit-sql", "GET", "/items?limit=1%20OR%201=1", 422),
    Case("limit-conflict", "GET", "/items?limit=1&limit=100", 422),
    Case("cursor-traversal", "GET", "/items?cursor=..%2F..%2Fetc", 422),
    Case("cursor-nul", "GET", "/items?cursor=%00%00", 422),
    Case("query-invalid-utf8", "GET", "/items?limit=%FF", 422),
    Case("long-garbage-request-id", "GET", "/items/0", 404, headers={"X-Request-ID": "x" * 10_000}),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_request_gets_its_expected_4xx(client: FlaskClient, case: Case) -> None:
    response = client.open(
        case.path, method=case.method, data=case.body, content_type=case.content_type, headers=case.headers
    )

    assert response.status_code == case.status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert "Traceback" not in response.get_data(as_text=True)


STORED_STRINGS = [
    "'; DROP TABLE items; --",
    "Robert'); DELETE FROM items WHERE ('1'='1",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "%00%2e%2e",
    "\u202etxt.exe",
    "Z\u0351\u0360\u0361a\u036b\u033e\u0367lgo",
    "🚀👩‍👩‍👧‍👦🏳️‍🌈",
    "\ufeffbom inside",
    "\u00a0non-breaking\u2028line separator",
    "𝕳𝖊𝖑𝖑𝖔",
    "\\u0000 literally",
]


@pytest.mark.parametrize("text", STORED_STRINGS)
def test_accepted_strings_read_back_byte_for_byte(client: FlaskClient, text: str) -> None:
    created = client.post("/items", json={"title": text, "description": text})
    assert created.status_code == 201

    fetched = client.get(f"/items/{created.get_json()['id']}").get_json()

    assert fetched["title"] == text.strip()
    assert fetched["description"] == text
