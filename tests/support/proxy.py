"""A TCP proxy between the app and PostgreSQL whose link the test cuts and restores."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from tests.support.tcp import free_port


def _reset(sock: socket.socket) -> None:
    # SO_LINGER 0: close() sends RST, as when a firewall or a dead peer kills the link.
    # SHUT_RD first wakes a pump thread blocked in recv() before its descriptor is closed.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    sock.close()


class LinkProxy:
    """Forwards 127.0.0.1:``port`` (a free one unless given) to ``target_host``:``target_port``.

    ``cut()`` resets every open link and refuses new connections until ``restore()``.
    ``stall()`` is the silent kind of partition: links stay open but no byte passes
    (nor any new connection completes) until ``resume()``.
    """

    def __init__(self, target_port: int, port: int | None = None, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self._server: socket.socket | None = None
        self._links: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def start(self) -> None:
        server = socket.create_server(("127.0.0.1", self.port))
        with self._lock:
            self._server = server
        threading.Thread(target=self._accept, args=(server,), name="link-proxy-accept", daemon=True).start()

    restore = start

    def cut(self) -> None:
        with self._lock:
            server, self._server = self._server, None
            links, self._links = self._links, set()
        if server is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone does not.
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()
        for link in links:
            _reset(link)

    close = cut

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            self._flowing.wait()
            try:
                upstream = socket.create_connection(self.target, timeout=2)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                if self._server is not server:  # cut while connecting
                    _reset(client)
                    _reset(upstream)
                    return
                self._links.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), name="link-proxy-pump", daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._links.discard(source)
                self._links.discard(sink)
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def __enter__(self) -> LinkProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()
