"""Concurrent writers (and a reader) that record every response, for the checks in checks.py.

Each write has a unique marker in its title and its own Idempotency-Key. A write that
gets a 5xx, a 409 or no response at all is retried with the same key and body until it
gets its 201 (bounded), as a careful client would.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg

REQUEST_TIMEOUT_SECONDS = 10.0
# Retry-After says 2 s; the writers come back sooner so recovery is measured to ~0.1 s.
RETRY_DELAY_SECONDS = 0.1
WRITE_DEADLINE_SECONDS = 30.0


@dataclass(frozen=True)
class Attempt:
    """One HTTP exchange. ``status`` is None when no response came (refused, reset, timeout)."""

    kind: str
    key: str | None
    t0: float
    t1: float
    status: int | None
    error: str | None = None
    item_id: int | None = None
    replayed: bool = False
    retry_after: str | None = None
    content_type: str | None = None

    @property
    def failed(self) -> bool:
        return self.status is None or self.status >= 500


@dataclass
class Write:
    marker: str
    key: str
    acked_id: int | None = None


def _exchange(port: int, method: str, path: str, body: bytes | None, headers: dict[str, str], kind: str) -> Attempt:
    key = headers.get("Idempotency-Key")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_SECONDS)
    t0 = time.monotonic()
    try:
        connection.request(method, path, body, headers)
        response = connection.getresponse()
        payload = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return Attempt(kind, key, t0, time.monotonic(), None, error=type(exc).__name__)
    finally:
        connection.close()
    t1 = time.monotonic()
    item_id = json.loads(payload)["id"] if response.status == 201 else None
    return Attempt(
        kind,
        key,
        t0,
        t1,
        response.status,
        item_id=item_id,
        replayed=response.getheader("Idempotent-Replayed", "").lower() == "true",
        retry_after=response.getheader("Retry-After"),
        content_type=response.getheader("Content-Type"),
    )


class Load:
    """``writers`` threads creating items and ``readers`` threads listing them, until stopped."""

    def __init__(self, port: int, token: str, prefix: str, writers: int = 6, readers: int = 1) -> None:
        self.port = port
        self.token = token
        self.prefix = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.attempts: list[Attempt] = []
        self.writes: list[Write] = []
        self._stop = threading.Event()
        self._threads = [
            *(threading.Thread(target=self._write_loop, args=(n,), name=f"writer-{n}") for n in range(writers)),
            *(threading.Thread(target=self._read_loop, name=f"reader-{n}") for n in range(readers)),
        ]
        self.started = self.stopped = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop starting new writes; each writer still settles the one it has begun."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=WRITE_DEADLINE_SECONDS + REQUEST_TIMEOUT_SECONDS)
        self.stopped = time.monotonic()

    def _write_loop(self, n: int) -> None:
        seq = 0
        while not self._stop.is_set():
            seq += 1
            write = Write(marker=f"{self.prefix}-w{n}-{seq}", key=uuid.uuid4().hex)
            self.writes.append(write)
            self._settle(write)

    def _settle(self, write: Write) -> None:
        body = json.dumps({"title": write.marker, "description": f"written by {threading.current_thread().name}"})
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.token}",
            "Idempotency-Key": write.key,
        }
        deadline = time.monotonic() + WRITE_DEADLINE_SECONDS
        while True:
            attempt = _exchange(self.port, "POST", "/items", body.encode(), headers, "write")
            self.attempts.append(attempt)
            if attempt.status == 201:
                write.acked_id = attempt.item_id
                return
            retryable = attempt.status is None or attempt.status >= 500 or attempt.status == 409
            if not retryable or time.monotonic() > deadline:
                return
            time.sleep(RETRY_DELAY_SECONDS)

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            attempt = _exchange(self.port, "GET", "/items?limit=5", None, {}, "read")
            self.attempts.append(attempt)
            if attempt.failed:
                time.sleep(RETRY_DELAY_SECONDS)

    def dump(self, path: Path, origin: float) -> None:
        """Every attempt as JSON lines, times in seconds from ``origin``, for post-mortems."""
        with path.open("w") as out:
            for a in sorted(self.attempts, key=lambda a: a.t0):
                record = {**asdict(a), "t0": round(a.t0 - origin, 4), "t1": round(a.t1 - origin, 4)}
                out.write(json.dumps(record) + "\n")

    def rows(self, dsn: str) -> dict[str, list[int]]:
        """Every row this load may have created: marker -> ids."""
        found: dict[str, list[int]] = {}
        with psycopg.connect(dsn) as connection:
            query = "SELECT title, id FROM items WHERE title LIKE %s ORDER BY id"
            for title, item_id in connection.execute(query, (self.prefix + "-%",)):
                found.setdefault(title, []).append(item_id)
        return found
