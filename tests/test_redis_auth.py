"""The production compose file's Redis requires a password, and the app's REDIS_URL carries it.

Runs the exact command of the ``redis`` service of docker/docker-compose.prod.yml with a
real redis-server on a free loopback port (the container check runs it in Docker too).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.main import create_app
from tests.support.tcp import free_port
from tests.support.tools import require_tool

DOCKER = Path(__file__).resolve().parent.parent / "docker"
PASSWORD = "test-redis-password-0123456789"


def _compose_redis_command() -> list[str]:
    service = yaml.safe_load((DOCKER / "docker-compose.prod.yml").read_text())["services"]["redis"]
    # Compose turns "$$" into a literal "$" for the container.
    return [part.replace("$$", "$") for part in service["command"]]


def _start(password: str, port: int, stderr: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    require_tool("redis-server")
    command = [*_compose_redis_command(), "--port", str(port), "--bind", "127.0.0.1"]
    env = {**os.environ, "REDIS_PASSWORD": password}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def _client(port: int, password: str | None = None) -> redis.Redis:
    # No retries: redis-py retries a refused AUTH with backoff (seconds) by default.
    return redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=2, retry=Retry(NoBackoff(), 0))


@pytest.fixture
def compose_redis() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    process = _start(PASSWORD, port)
    try:
        with _client(port, PASSWORD) as client:
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            else:
                raise RuntimeError("redis-server did not start")
        yield port, process
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_an_unauthenticated_client_is_refused(compose_redis: tuple[int, subprocess.Popen[bytes]]) -> None:
    port, _ = compose_redis
    with _client(port) as anonymous, pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    with _client(port, "wrong") as wrong, pytest.raises(redis.AuthenticationError):
        wrong.ping()
    with redis.Redis.from_url(f"redis://:{PASSWORD}@127.0.0.1:{port}/0") as authenticated:
        assert authenticated.ping()


def test_the_password_is_not_on_the_command_line(compose_redis: tuple[int, subprocess.Popen[bytes]]) -> None:
    _, process = compose_redis
    command_lines = [Path(f"/proc/{process.pid}/cmdline").read_bytes()]
    command_lines += [path.read_bytes() for path in Path(f"/proc/{process.pid}/task").glob("*/cmdline")]
    assert all(PASSWORD.encode() not in line for line in command_lines)


def test_redis_refuses_to_start_without_a_password() -> None:
    process = _start("", free_port(), stderr=subprocess.PIPE)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 1
    assert b"REDIS_PASSWORD" in stderr


def test_the_app_counts_its_limits_through_the_password_url(
    compose_redis: tuple[int, subprocess.Popen[bytes]], instance_path: Path
) -> None:
    port, _ = compose_redis
    app = create_app(
        {
            "APP_ENV": "test",
            "DATABASE_URL": f"sqlite:///{instance_path}/items.db",
            "REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:{port}/0",
            "RATE_LIMIT": "1 per minute",
        }
    )
    client = app.test_client()
    statuses = [client.delete("/items/1").status_code for _ in range(2)]  # 401: no token, no database
    assert statuses == [401, 429]
    with redis.Redis.from_url(f"redis://:{PASSWORD}@127.0.0.1:{port}/0") as authenticated:
        assert authenticated.dbsize() > 0


def test_the_production_example_puts_the_password_into_redis_url() -> None:
    example = (DOCKER.parent / ".env.prod.example").read_text().splitlines()
    settings = dict(line.split("=", 1) for line in example if line and not line.startswith("#"))
    assert "REDIS_PASSWORD" in settings
    assert settings["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD}@redis:")
