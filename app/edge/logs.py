"""Logging set-up: plain text or one JSON object per line, every record tagged with its request id.

``SWIRL_LOG_FORMAT=json`` gives structured logs for a log collector: ``time``, ``level``,
``logger``, ``message``, ``request_id`` (when the record was made while serving a request)
and, for access lines, the request's fields (``method``, ``path``, ``status``, ...); errors
carry ``exception`` with the traceback. The text format puts the request id in brackets.
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from typing import Any, Literal

import orjson

REQUEST_ID: ContextVar[str | None] = ContextVar("swirl_request_id", default=None)
LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
# attributes every LogRecord has; anything else was passed with extra= and goes into the JSON object
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` from the request being served ("-" outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``extra=`` fields become keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "-")
        if request_id != "-":
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class _SwirlHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler this module installs (configuring twice replaces it).

    Writes to whatever ``sys.stderr`` is at the time of each record (unless a stream was set),
    so a replaced stderr (test runners capture it per test) never leaves it writing to a closed file.
    """

    def __init__(self) -> None:
        self._fixed: Any = None
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return self._fixed if self._fixed is not None else sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        self._fixed = None if value is sys.stderr else value


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Route every logger (uvicorn's included) through one stderr handler in the chosen format."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _SwirlHandler)]:
        root.removeHandler(handler)
    handler = _SwirlHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("swirl").setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own handlers would print a second, unformatted copy
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
