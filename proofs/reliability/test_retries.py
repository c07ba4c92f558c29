"""A client that times out and retries with the same Idempotency-Key gets one item, not two.

This is the ambiguous case the fault scenarios hit by chance, made deterministic: the
first request is held in flight by a table lock while the client gives up on it.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from proofs.reliability.conftest import Stack

StackFactory = Callable[..., Stack]


@dataclass(frozen=True)
class Reply:
    status: int
    replayed: bool
    body: Any


def _post(port: int, token: str, key: str, title: str, timeout: float = 10.0) -> Reply | None:
    """POST /items; None when the client gave up waiting."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}", "Idempotency-Key": key}
    try:
        connection.request("POST", "/items", json.dumps({"title": title}), headers)
        response = connection.getresponse()
        body = json.loads(response.read())
    except TimeoutError:
        return None
    finally:
        connection.close()
    return Reply(response.status, response.getheader("Idempotent-Replayed") == "true", body)


@pytest.mark.timeout(60)
def test_a_retry_after_a_client_timeout_replays_the_first_create(stack_factory: StackFactory) -> None:
    stack = stack_factory("retry")
    stack.server.start()
    port = stack.server.port
    key, title = uuid.uuid4().hex, f"retry-{uuid.uuid4().hex}"

    with psycopg.connect(stack.dsn) as locker:
        locker.execute("LOCK TABLE items IN SHARE MODE")
        timed_out = _post(port, stack.token, key, title, timeout=0.5)
        while_in_flight = _post(port, stack.token, key, title)
        locker.rollback()

    deadline = time.monotonic() + 10
    retried = _post(port, stack.token, key, title)
    while retried is not None and retried.status == 409 and time.monotonic() < deadline:
        time.sleep(0.1)
        retried = _post(port, stack.token, key, title)
    other_body = _post(port, stack.token, key, title + "-changed")
    with psycopg.connect(stack.dsn) as connection:
        rows = connection.execute("SELECT id FROM items WHERE title = %s", (title,)).fetchall()

    assert timed_out is None
    assert while_in_flight is not None
    assert while_in_flight.status == 409
    assert retried == Reply(201, True, retried.body if retried else None)
    assert rows == [(retried.body["id"],)]
    assert other_body is not None
    assert other_body.status == 422
