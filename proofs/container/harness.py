"""Helpers for the container end-to-end check: docker and compose commands, loopback HTTP.

Everything talks to the private engine in DOCKER_HOST (started by run.sh) and to
127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "docker"

# The HTTPS check runs against Caddy's internal CA, which nothing here trusts.
_INSECURE_TLS = ssl.create_default_context()
_INSECURE_TLS.check_hostname = False
_INSECURE_TLS.verify_mode = ssl.CERT_NONE


def run(
    cmd: Sequence[str],
    *,
    timeout: float = 120,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure the assertion message carries its output."""
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run(
        list(cmd), cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
        )
    return result


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["docker", *args], timeout=timeout, check=check)


def inspect(ref: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(docker("inspect", ref).stdout)
    return data[0]


def image_exists(ref: str) -> bool:
    return docker("image", "inspect", ref, check=False).returncode == 0


@dataclass
class Compose:
    """One compose file, with an optional --env-file and extra environment."""

    file: Path
    env_file: Path | None = None
    env: Mapping[str, str] | None = None

    def __call__(self, *args: str, timeout: float = 240, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["docker", "compose", "-f", str(self.file)]
        if self.env_file is not None:
            cmd += ["--env-file", str(self.env_file)]
        return run([*cmd, *args], timeout=timeout, check=check, env=self.env, cwd=self.file.parent)

    def container(self, service: str) -> str:
        ids = self("ps", "-a", "-q", service).stdout.split()
        assert len(ids) == 1, f"expected one {service} container, got {ids}"
        return ids[0]

    def timed_up(self, *args: str) -> float:
        """`up -d --wait` that never pulls; returns the seconds it took."""
        started = time.monotonic()
        self("up", "-d", "--wait", "--wait-timeout", "180", "--pull", "never", *args)
        return time.monotonic() - started

    def down(self) -> None:
        self("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)


@dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    *,
    json_body: object | None = None,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10,
) -> Response:
    """One request; HTTP errors are returned, not raised. Redirects are not followed."""
    all_headers = dict(headers or {})
    if json_body is not None:
        data = json.dumps(json_body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    assert url.startswith(("http://127.0.0.1:", "http://localhost:", "https://localhost:")), url
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)  # noqa: S310 (checked above)
    # No proxy from the environment may see loopback traffic.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=_INSECURE_TLS), _NoRedirect()
    )
    try:
        with opener.open(request, timeout=timeout) as response:
            return Response(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, dict(error.headers), error.read())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def wait_until_healthy(url: str, deadline_s: float = 60) -> Response:
    """Poll a health URL (bounded in time) until it answers 200."""
    end = time.monotonic() + deadline_s
    last: Response | str = "no answer"
    while time.monotonic() < end:
        try:
            last = http("GET", url, timeout=2)
            if last.status == 200:
                return last
        except OSError as error:
            last = repr(error)
        time.sleep(0.5)
    raise AssertionError(f"{url} not healthy within {deadline_s} s: {last}")


def record(name: str, value: str) -> None:
    """Append a measurement; run.sh prints them after the tests."""
    path = os.environ.get("CT_METRICS_FILE")
    line = f"{name}: {value}"
    print(line)
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
