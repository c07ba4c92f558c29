"""Believe X-Forwarded-For/-Proto only from our own proxy.

``TRUSTED_PROXY_HOPS`` says how many proxies stand in front (Caddy: 1); the headers are
honoured only when the connection comes from an address in ``FORWARDED_ALLOW_IPS``.
Anyone else who reaches the port directly, another container or pod, is keyed and logged
by its own address.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.middleware.proxy_fix import ProxyFix

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxyFix:
    """ProxyFix for connections from ``allowed`` networks (None: from anyone)."""

    def __init__(self, app: WSGIApplication, hops: int, allowed: tuple[Network, ...] | None) -> None:
        self.app = app
        self.fixed = ProxyFix(app, x_for=hops, x_proto=hops)
        self.allowed = allowed
        # The answer per peer address, not parsed again per request (behind a proxy every
        # request comes from the same few peers).
        self._trusted = functools.lru_cache(maxsize=1024)(self._check)

    def _check(self, peer: str | None) -> bool:
        if self.allowed is None:
            return True
        try:
            address = ipaddress.ip_address(peer or "")
        except ValueError:
            return False
        return any(address in network for network in self.allowed)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self._trusted(environ.get("REMOTE_ADDR")):
            return self.fixed(environ, start_response)
        return self.app(environ, start_response)
