"""The Redis the suite talks to: TEST_REDIS_URL (then required), else the local one if it answers."""

from __future__ import annotations

import os

import pytest
import redis

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def redis_url() -> str:
    """The URL of a Redis that answers; fails (TEST_REDIS_URL set) or skips (not set) otherwise."""
    explicit = os.environ.get("TEST_REDIS_URL")
    url = explicit or DEFAULT_REDIS_URL
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1) as client:
            client.ping()
    except redis.RedisError as exc:
        if explicit:
            pytest.fail(f"TEST_REDIS_URL is set but Redis does not answer: {exc}")
        pytest.skip(f"Redis does not answer at {url}; set TEST_REDIS_URL to run this test")
    return url
