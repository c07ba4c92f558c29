"""Loopback ports: a free one, waiting for one to listen, and a black hole that never answers."""

from __future__ import annotations

import random
import socket
import subprocess
import threading
import time
from pathlib import Path


def free_port() -> int:
    """A free loopback port below 32768, outside Linux's ephemeral range, so no outgoing connection holds it."""
    for _ in range(500):
        port = random.randrange(20_000, 32_768)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below 32768")


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None, log: Path, timeout: float = 15) -> None:
    """Until something listens on 127.0.0.1:``port``; fails early when ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s:\n{log.read_text(errors='replace')}")


class BlackHole:
    """Accepts TCP connections and never answers, like a database that hangs."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            self._held.append(connection)

    def __enter__(self) -> BlackHole:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        for connection in self._held:
            connection.close()
