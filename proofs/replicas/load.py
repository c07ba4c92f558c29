"""Bounded concurrent load through the proxy on 127.0.0.1, and what every attempt got back.

Readers GET; writers create items one after another, each with its own Idempotency-Key,
and retry a create with the same key until it is acknowledged (201), as a client
should. Every attempt carries its own X-Request-ID, which the replica that serves it
logs, so the logs tell which replica answered.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from dataclasses import dataclass
from types import TracebackType

REQUEST_TIMEOUT_S = 10.0
# How long one create is retried (with its key) before the writer gives up on it.
CREATE_RETRY_S = 20.0
RETRY_PAUSE_S = 0.2


@dataclass(frozen=True)
class Outcome:
    """One HTTP attempt as the client saw it; times are time.monotonic() seconds."""

    method: str
    request_id: str
    sent: float
    done: float
    status: int  # 0: no HTTP response (refused, reset, timed out)
    echoed: bool = False  # the response carried our X-Request-ID
    key: str | None = None  # the Idempotency-Key of a create
    item_id: int | None = None
    replayed: bool = False  # Idempotent-Replayed: the create had already happened

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Client:
    """One keep-alive connection to the proxy, opened again after any failure."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def send(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S)
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Load:
    """Reader and writer threads against the proxy from __enter__ until stop() or max_s."""

    def __init__(self, port: int, token: str, phase: str, *, readers: int = 3, writers: int = 3, max_s: float = 90):
        self.port, self.token, self.phase = port, token, phase
        self.outcomes: list[Outcome] = []
        self.acked: dict[str, int] = {}  # Idempotency-Key -> id of the acknowledged item
        self.gave_up: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._hard_stop = time.monotonic() + max_s
        self._threads = [
            *(
                threading.Thread(target=self._reader, args=(i,), name=f"{phase}-r{i}", daemon=True)
                for i in range(readers)
            ),
            *(
                threading.Thread(target=self._writer, args=(i,), name=f"{phase}-w{i}", daemon=True)
                for i in range(writers)
            ),
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """No new requests; a create in progress is still retried until acknowledged (bounded)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=CREATE_RETRY_S + 2 * REQUEST_TIMEOUT_S)
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"load threads did not stop: {alive}"

    def _stopping(self) -> bool:
        return self._stop.is_set() or time.monotonic() > self._hard_stop

    def _reader(self, index: int) -> None:
        client, n = Client(self.port), 0
        try:
            while not self._stopping():
                n += 1
                with self._lock:
                    known = list(self.acked.values())[-50:]
                path = f"/items/{random.choice(known)}" if known and n % 2 else "/items?limit=5"
                self._attempt(client, "GET", path, f"rp-{self.phase}-r{index}-{n}")
        finally:
            client.close()

    def _writer(self, index: int) -> None:
        client, n = Client(self.port), 0
        try:
            while not self._stopping():
                n += 1
                self._create(client, f"rp-{self.phase}-w{index}-{n}")
        finally:
            client.close()

    def _create(self, client: Client, key: str) -> None:
        body = json.dumps({"title": key, "description": "replica proof"}).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json", "Idempotency-Key": key}
        deadline = min(time.monotonic() + CREATE_RETRY_S, self._hard_stop + CREATE_RETRY_S)
        attempt = 0
        while time.monotonic() < deadline:
            attempt += 1
            outcome = self._attempt(client, "POST", "/items", f"{key}.{attempt}", body, headers, key)
            if outcome.status == 201:
                with self._lock:
                    self.acked[key] = outcome.item_id  # type: ignore[assignment]
                return
            time.sleep(RETRY_PAUSE_S)
        with self._lock:
            self.gave_up.append(key)

    def _attempt(
        self,
        client: Client,
        method: str,
        path: str,
        request_id: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        key: str | None = None,
    ) -> Outcome:
        sent = time.monotonic()
        try:
            status, got, data = client.send(method, path, {"X-Request-ID": request_id, **(headers or {})}, body)
        except (OSError, http.client.HTTPException):
            outcome = Outcome(method, request_id, sent, time.monotonic(), 0, key=key)
        else:
            item_id = json.loads(data)["id"] if status == 201 else None
            outcome = Outcome(
                method,
                request_id,
                sent,
                time.monotonic(),
                status,
                echoed=got.get("x-request-id") == request_id,
                key=key,
                item_id=item_id,
                replayed=got.get("idempotent-replayed") == "true",
            )
        with self._lock:
            self.outcomes.append(outcome)
        return outcome


@dataclass(frozen=True)
class Errors:
    """The non-2xx attempts of a run and the span of time they fall in."""

    count: int
    by_status: dict[int, int]
    by_method: dict[str, int]
    first_sent: float | None
    last_done: float | None

    @property
    def window_s(self) -> float:
        return 0.0 if self.first_sent is None or self.last_done is None else self.last_done - self.first_sent


def errors_of(outcomes: list[Outcome]) -> Errors:
    bad = [o for o in outcomes if not o.ok]
    by_status: dict[int, int] = {}
    by_method: dict[str, int] = {}
    for o in bad:
        by_status[o.status] = by_status.get(o.status, 0) + 1
        by_method[o.method] = by_method.get(o.method, 0) + 1
    return Errors(
        len(bad),
        by_status,
        by_method,
        min((o.sent for o in bad), default=None),
        max((o.done for o in bad), default=None),
    )
