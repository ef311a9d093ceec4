"""A node's log: readable lines by default, JSON lines with `--log-format json`.

Every logger goes through the root handler set up here: raftkv's own, aiohttp's and
PySyncObj's, warnings, and exceptions that end a thread. A JSON line has `ts` (UTC, ISO 8601),
`level`, `logger`, `msg`, the record's structured fields (passed as `extra=`), and `exc` with
the whole traceback as one string. A text line is the message alone: it already says the
figures that the JSON line also carries as fields.

Requests are logged one line each at debug level (`raftkv.http`: method, path, status, ms,
remote) by both HTTP fronts: the path never includes the query, which may hold `?token=`.
Nothing per request is logged above debug, so a busy node's log does not flood.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from aiohttp.abc import AbstractAccessLogger

FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
HTTP_LOG = logging.getLogger("raftkv.http")
# What every LogRecord has; anything else on a record came as structured fields (extra=).
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def structured_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line (newlines inside messages and tracebacks are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(structured_fields(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=str)  # ASCII only: no U+2028 and the like splits a line


def setup(level: str = "INFO", fmt: str = "text") -> None:
    """Send every logger's records at `level` or above to stderr in `fmt` (called once, at start)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    threading.excepthook = _log_thread_exception


def json_on() -> bool:
    """Whether `setup` made the log JSON lines (then every stderr line should be one)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    exc_info = (args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)
    logging.getLogger("raftkv").error("uncaught exception in thread %s", name, exc_info=exc_info)


def request_logging_on() -> bool:
    return HTTP_LOG.isEnabledFor(logging.DEBUG)


def log_request(method: str, path: str, status: int, elapsed_s: float, remote: str | None) -> None:
    """One request's line (debug). `path` without its query: a query may carry a token."""
    ms = round(elapsed_s * 1000, 1)
    HTTP_LOG.debug("%s %s %d %.1f ms %s", method, path, status, ms, remote or "-",
                   extra={"method": method, "path": path, "status": status, "ms": ms, "remote": remote})


class AiohttpRequestLog(AbstractAccessLogger):
    """aiohttp's access log as `log_request` lines (AppRunner(access_log_class=...))."""

    @property
    def enabled(self) -> bool:
        return request_logging_on()

    def log(self, request, response, time: float) -> None:
        log_request(request.method, request.path, response.status, time, request.remote)
