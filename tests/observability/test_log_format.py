"""The JSON formatter's one-pass path and cached timestamps write exactly what the libraries they stand in for write."""

from __future__ import annotations

import copy
import datetime
import decimal
import enum
import json
import logging
import random
import sys
import threading
import time
from typing import Any

import pytest
from pythonjsonlogger.orjson import OrjsonFormatter

from app.observability.logs import JsonFormatter, stdout_handler, utc_timestamp


class Colour(enum.Enum):
    RED = "red"


def _record(
    msg: object = "request", args: Any = (), extra: dict[Any, object] | None = None, **kw: Any
) -> logging.LogRecord:
    logger = logging.getLogger("app.test_format")
    return logger.makeRecord(
        logger.name, logging.INFO, __file__, 7, msg, args, kw.get("exc_info"), "f", extra, kw.get("sinfo")
    )


def _exc_info() -> Any:
    try:
        raise ValueError("boom")
    except ValueError:
        return sys.exc_info()


RECORDS = {
    "access-line": lambda: _record(
        extra={
            "request_id": "0f" * 16,
            "method": "GET",
            "route": "/items/<item_id:item_id>",
            "status": 200,
            "duration_ms": 0.37,
            "client": "203.0.113.7",
            "user_agent": 'curl/8 "quoted" \\ \u00fcn\u00efcode \U0001f600',
            "principal": "me",
        }
    ),
    "message-with-args": lambda: _record("%s of %d", ("two", 3)),
    "mapping-arg": lambda: _record("%(a)s", ({"a": 1},)),
    "no-extras": lambda: _record("plain"),
    "values-json-lacks": lambda: _record(
        extra={
            "when": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
            "amount": decimal.Decimal("1.50"),
            "raw": b"bytes",
            "colour": Colour.RED,
            "kind": int,
            "nothing": None,
            "nested": {"a": [1, 2.5, "x"]},
        }
    ),
    "private-extra": lambda: _record(extra={"_private": 1, "public": 2}),
    "extra-named-like-an-output-key": lambda: _record(extra={"timestamp": "mine", "level": "mine", "event": "mine"}),
    "non-str-key": lambda: _record(extra={1: "one", "two": 2}),
    "exception": lambda: _record("failed", exc_info=_exc_info(), extra={"request_id": "r"}),
    "stack": lambda: _record("here", sinfo="Stack (most recent call last):\n  line"),
    "dict-message": lambda: _record({"event_override": "x", "n": 1}),
}


@pytest.mark.parametrize("make", RECORDS.values(), ids=RECORDS.keys())
def test_json_lines_equal_what_the_json_logger_library_formats(make: Any) -> None:
    record = make()
    reference = copy.copy(record)
    formatter = JsonFormatter()

    ours = formatter.format(record)
    theirs = OrjsonFormatter.format(formatter, reference)  # the library's generic path, same settings

    assert ours == theirs
    assert vars(record) == vars(reference)  # the same attributes left on the record (message, asctime)
    assert isinstance(json.loads(ours), dict)


def test_json_lines_from_concurrent_threads_never_interleave(capsys: pytest.CaptureFixture[str]) -> None:
    handler = stdout_handler("json")
    logger = logging.getLogger("app.test_format.threads")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    threads, lines_each = 8, 300
    filler = "x" * 2000  # long lines: a torn write would show

    def log_lines(thread: int) -> None:
        for n in range(lines_each):
            logger.info("request", extra={"thread_no": thread, "n": n, "filler": filler})

    try:
        workers = [threading.Thread(target=log_lines, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted((line["thread_no"], line["n"]) for line in lines) == [
        (t, n) for t in range(threads) for n in range(lines_each)
    ]
    assert all(line["filler"] == filler for line in lines)


def _isoformat_timestamp(created: float) -> str:
    return (
        datetime.datetime.fromtimestamp(created, datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def test_timestamps_equal_datetimes_isoformat_to_the_millisecond() -> None:
    rng = random.Random(20261205)
    now = time.time()
    spread = [now + rng.uniform(-1e7, 1e7) for _ in range(20_000)]
    same_second = [1_700_000_000 + rng.random() for _ in range(2_000)]
    # Where rounding to the microsecond (half to even) decides the millisecond or the second.
    fractions = (0.0, 0.0004995, 0.0009995, 0.4999995, 0.9994999, 0.9995, 0.9999994, 0.9999995, 0.9999999)
    edges = [float(second) + fraction for second in range(1_700_000_000, 1_700_000_040) for fraction in fractions]
    others = [0.0, 0.9999995, 951_782_400.0, 4_102_444_799.9999995, -1.25, -0.0000005]

    for created in [*spread, *same_second, *edges, *others]:
        assert utc_timestamp(created) == _isoformat_timestamp(created), created


def test_timestamps_from_concurrent_threads_are_each_their_own() -> None:
    seconds = [1_700_000_000 + n * 3_600 for n in range(8)]  # each thread its own hour: the cache thrashes
    failures: list[float] = []

    def format_many(second: int) -> None:
        for n in range(2_000):
            created = second + n / 2_000
            if utc_timestamp(created) != _isoformat_timestamp(created):
                failures.append(created)

    workers = [threading.Thread(target=format_many, args=(second,)) for second in seconds]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []
