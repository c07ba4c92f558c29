"""The JSON formatter's one-pass path writes exactly what python-json-logger's generic path writes."""

from __future__ import annotations

import copy
import datetime
import decimal
import enum
import json
import logging
import sys
import threading
from typing import Any

import pytest
from pythonjsonlogger.orjson import OrjsonFormatter

from app.observability.logs import JsonFormatter, stdout_handler


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
