"""The limiter's stated accuracy against real Redis: exact up to the batch, bounded above it,
across instances and threads; at most one Redis round trip per request whatever its number
of limits, one per batch far below the limit; back to shared limits after an outage."""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from limits import parse, parse_many

from app import ratelimit
from app.ratelimit import KEY_PREFIX, LOCAL_BATCH, RateLimiter, SharedWindows
from tests.support.redis_db import redis_url as _redis_url


def _storage(url: str, prefix: str | None = None) -> SharedWindows:
    """Counters of their own (a fresh prefix) in the test Redis, on a client of their own."""
    return SharedWindows(redis.Redis.from_url(url), prefix or f"{KEY_PREFIX}-test-{uuid.uuid4().hex}")


def _admitted_by_instances(limit: str, instances: int, hits: int) -> int:
    """``hits`` requests of one client spread over ``instances`` "replicas" (each its own
    storage and connection pool), eight threads at once; how many were admitted."""
    url = _redis_url()
    prefix = f"{KEY_PREFIX}-test-{uuid.uuid4().hex}"
    limiters = [RateLimiter(_storage(url, prefix), parse_many(limit), []) for _ in range(instances)]

    def hit(n: int) -> bool:
        return limiters[n % instances].hit("addr:198.51.100.7", "items.list_items") is None

    with ThreadPoolExecutor(max_workers=8) as pool:
        return sum(pool.map(hit, range(hits)))


def test_a_limit_of_at_most_the_batch_is_exact_across_instances_and_threads() -> None:
    assert _admitted_by_instances(f"{LOCAL_BATCH} per minute", instances=4, hits=200) == LOCAL_BATCH


def test_above_the_batch_at_most_batch_minus_one_per_instance_pass_over_the_limit() -> None:
    admitted = _admitted_by_instances("200 per minute", instances=4, hits=600)

    assert 200 <= admitted <= 200 + 4 * (LOCAL_BATCH - 1)


def test_a_request_costs_at_most_one_round_trip_and_far_below_the_limit_one_per_batch() -> None:
    storage = _storage(_redis_url())
    limiter = RateLimiter(storage, parse_many("100000 per minute"), parse_many("10000 per minute"))
    calls: list[tuple[object, ...]] = []
    connection = storage.client
    original = connection.execute_command

    def counting(*args: object, **options: object) -> object:
        calls.append(args)
        return original(*args, **options)

    connection.execute_command = counting  # type: ignore[method-assign]
    limiter.hit("addr:a", "items.get_item")  # first use loads the script (EVALSHA, then EVAL once)
    calls.clear()

    for _ in range(2 * LOCAL_BATCH):
        assert limiter.hit("addr:a", "items.list_items") is None
    assert [call[0] for call in calls] == ["EVALSHA", "EVALSHA"]  # the first hit, then one per batch
    calls.clear()
    assert limiter.hit("addr:a", "items.create_item") is None
    assert [call[:3] for call in calls] == [("EVALSHA", storage._hit_all.sha, 2)]  # both limits, one call


@pytest.mark.parametrize(("general", "writes"), [("5 per minute", "2 per minute"), ("2 per minute", "5 per minute")])
def test_a_write_counts_against_both_limits_and_the_lower_one_holds(general: str, writes: str) -> None:
    limiter = RateLimiter(_storage(_redis_url()), parse_many(general), parse_many(writes))

    results = [limiter.hit("addr:w", "items.create_item") for _ in range(3)]

    assert results[:2] == [None, None]
    assert results[2] is not None
    assert results[2].limit == parse("2 per minute")


def test_the_breach_says_when_to_retry() -> None:
    limiter = RateLimiter(_storage(_redis_url()), parse_many("1 per minute"), [])

    assert limiter.hit("addr:b", "items.get_item") is None
    breach = limiter.hit("addr:b", "items.get_item")

    assert breach is not None
    assert breach.limit == parse("1 per minute")
    assert 0 < breach.retry_after <= 60


def test_endpoints_and_clients_have_buckets_of_their_own() -> None:
    limiter = RateLimiter(_storage(_redis_url()), parse_many("1 per minute"), [])

    assert limiter.hit("addr:c", "items.get_item") is None
    assert limiter.hit("addr:c", "items.list_items") is None
    assert limiter.hit("addr:d", "items.get_item") is None
    assert limiter.hit("addr:c", "items.get_item") is not None


def test_after_an_outage_it_limits_per_process_then_shares_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RateLimiter(_storage(_redis_url()), parse_many("2 per minute"), [])
    assert limiter.shared is not None
    shared_hit = limiter.shared.hit

    def down(*_: object, **__: object) -> object:
        raise redis.ConnectionError("down")

    monkeypatch.setattr(limiter.shared, "hit", down)
    now = [1000.0]
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: now[0])

    with caplog.at_level(logging.INFO, logger="app.ratelimit"):
        assert limiter.hit("addr:e", "items.list_items") is None  # served from memory, logged
        assert limiter.hit("addr:e", "items.list_items") is None  # still memory: Redis not asked
        assert limiter.hit("addr:e", "items.list_items") is not None  # the per-process limit holds

        monkeypatch.setattr(limiter.shared, "hit", shared_hit)
        now[0] += 1.5  # past the first back-off (1 s)
        assert limiter.hit("addr:e", "items.list_items") is None  # Redis again, its own count

    messages = [record.getMessage() for record in caplog.records]
    assert any("unreachable" in message for message in messages), messages
    assert any("shared again" in message for message in messages), messages


def test_without_redis_each_process_counts_in_memory() -> None:
    limiter = RateLimiter(None, parse_many("1 per minute"), [])

    assert limiter.shared is None
    assert limiter.hit("addr:f", "items.list_items") is None
    assert limiter.hit("addr:f", "items.list_items") is not None
