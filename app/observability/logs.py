"""Log records as one JSON object per line (console lines locally), with the request id.

Configured once per app on the root logger, so the server's, SQLAlchemy's and our own
loggers all come out in one format. Other handlers (pytest's caplog) are left alone.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

from flask import has_request_context
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

from ..request_id import current_request_id

_OURS = "_items_api_handler"
Stream = Literal["stdout", "stderr"]
_NOT_EXTRA = frozenset({*RESERVED_ATTRS, "taskName"})


def utc_timestamp(created: float) -> str:
    """``2026-01-02T03:04:05.678Z``: what datetime's isoformat to milliseconds writes, cached per second.

    Every log line has one; building a datetime and formatting it each time cost ~1.5 us.
    The rounding is datetime.fromtimestamp's (to the microsecond, half to even, which may
    carry into the next second), then truncation to milliseconds, as isoformat does.
    """
    if created < 0:  # before 1970: never a record's, but exact all the same
        return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    second = int(created)
    microseconds = round((created - second) * 1e6)
    if microseconds >= 1_000_000:
        second += 1
        microseconds -= 1_000_000
    cached_second, prefix = _second_prefix
    if cached_second != second:
        prefix = _prefix(second)
    return f"{prefix}.{microseconds // 1000:03d}Z"


def _prefix(second: int) -> str:
    global _second_prefix
    prefix = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds").removesuffix("+00:00")
    _second_prefix = (second, prefix)  # one object: a thread reads a pair that belongs together
    return prefix


_second_prefix: tuple[int, str] = (-1, "")


def _timestamp(record: logging.LogRecord) -> str:
    return utc_timestamp(record.created)


class JsonFormatter(OrjsonFormatter):
    """``timestamp level logger pid event`` then the record's extra fields; a traceback stays on the line."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            rename_fields={
                "asctime": "timestamp",
                "levelname": "level",
                "name": "logger",
                "process": "pid",
                "message": "event",
                "exc_info": "exception",
            },
        )
        # What the library leaves out of the extras: its reserved attributes and the
        # fields of the format, from its public attribute and method.
        self._not_extras = frozenset({*self.reserved_attrs, *self.parse()})

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _timestamp(record)

    def format(self, record: logging.LogRecord) -> str:
        # The common record (a str message, no exception, no stack) in one pass: the same
        # object python-json-logger builds (required fields renamed, then the extras in the
        # record's order), serialized by its own method; tests pin the equality. Measured on
        # the access line, the library's generic path (defaults, static fields, a rename
        # lookup and a hasattr per attribute) cost ~3 us more. Anything else: the library.
        if record.exc_info or record.exc_text or record.stack_info or isinstance(record.msg, dict):
            return super().format(record)
        record.message = message = record.getMessage()
        record.asctime = timestamp = _timestamp(record)
        log_data = {
            "timestamp": timestamp,
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "event": message,
        }
        skip = self._not_extras
        for key, value in record.__dict__.items():
            if key not in skip:
                if key.__class__ is not str:  # an extra={1: ...}: as odd as it is, the library's way
                    return super().format(record)
                if key[:1] != "_":
                    log_data[key] = value
        return self.jsonify_log_record(log_data)


class ConsoleFormatter(logging.Formatter):
    """``time LEVEL logger: event key=value ...`` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        extras = " ".join(f"{key}={value}" for key, value in vars(record).items() if _is_extra(key))
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.message}"
        if extras:
            line = f"{line} {extras}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


def _is_extra(key: str) -> bool:
    return key not in _NOT_EXTRA and not key.startswith("_")


class RequestIdFilter(logging.Filter):
    """Tags every record logged while serving a request with that request's id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") and has_request_context():
            record.request_id = current_request_id()
        return True


class StdoutHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stdout`` (or ``sys.stderr``) is when the record is emitted.

    pytest swaps ``sys.stdout`` per test; a handler holding the first one would
    write to a closed stream once that test is over.
    """

    def __init__(self, stream: Stream = "stdout") -> None:
        self._stream_name = stream
        super().__init__(getattr(sys, stream))

    def emit(self, record: logging.LogRecord) -> None:
        # StreamHandler.emit with its flush inline: handle() already holds this handler's
        # lock, which StreamHandler.flush would take again (with two more checks) per line.
        try:
            stream = self.stream = getattr(sys, self._stream_name)
            stream.write(self.format(record) + self.terminator)
            stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def stdout_handler(log_format: str = "json", stream: Stream = "stdout") -> logging.Handler:
    """The app's one handler; also named in app/server.py's logging config, so granian's own lines match."""
    handler = StdoutHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else ConsoleFormatter())
    handler.addFilter(RequestIdFilter())
    setattr(handler, _OURS, True)
    return handler


def _skip_unused_record_fields() -> None:
    """Stop every LogRecord looking up its thread and process names: no format of ours prints them.

    The logging HOWTO's "Optimization" knobs (each record paid for two threading lookups and
    a multiprocessing one). The pid (``logProcesses``) stays: every JSON line carries it.
    """
    logging.logThreads = False
    logging.logMultiprocessing = False
    if sys.version_info >= (3, 12):
        logging.logAsyncioTasks = False


def configure_logging(level: str, log_format: str, stream: Stream = "stdout") -> None:
    """Install our handler on the root logger, replacing the one an earlier call installed.

    Servers log to stdout (containers collect it); the flask commands log to stderr,
    as their stdout is their result.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(handler)
        handler.close()
    root.addHandler(stdout_handler(log_format, stream))
    root.setLevel(level)
    _skip_unused_record_fields()
    # Alembic announces its plugins at INFO whenever it is imported: noise, not news.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
