"""HTTP errors and the one middleware that translates every failure into a status and a line.

Handlers raise `HTTPProblem` (or let a `node.errors` exception escape); nothing else in
`api/` builds error responses (the lean front in api.fast_http uses `problem_for` too).
No traceback ever reaches a client.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from api.reply import Reply
from node.errors import (
    ClusterDiskFullError,
    DiskFullError,
    NoLeaderError,
    NotAppliedError,
    NotReadyError,
    OutcomeUnknownError,
)

log = logging.getLogger(__name__)

RETRY_AFTER_S = "1"


class HTTPProblem(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


def bad_request(reason: str) -> HTTPProblem:
    return HTTPProblem(400, reason)


def unavailable(reason: str) -> HTTPProblem:
    return HTTPProblem(503, reason, {"Retry-After": RETRY_AFTER_S})


def problem_for(exc: Exception) -> Reply | None:
    """The status and line a known failure is answered with; None for an unexpected one."""
    if isinstance(exc, HTTPProblem):
        return Reply.text(exc.status, exc.reason, exc.headers)
    for kind, prefix in ((NoLeaderError, "no leader"), (NotAppliedError, "not applied"),
                         (OutcomeUnknownError, "outcome unknown")):
        if isinstance(exc, kind):
            return Reply.text(503, f"{prefix}: {exc}", {"Retry-After": RETRY_AFTER_S})
    if isinstance(exc, DiskFullError):  # etcd's NOSPACE; 507 Insufficient Storage (RFC 4918)
        return Reply.text(507, str(exc), {"Retry-After": RETRY_AFTER_S})
    if isinstance(exc, NotReadyError | ClusterDiskFullError):
        return Reply.text(503, str(exc), {"Retry-After": RETRY_AFTER_S})
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return Reply.text(413, f"request body too large: {exc.text}")
    return None


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not isinstance(exc, web.HTTPRequestEntityTooLarge):
            raise  # aiohttp's own 404/405 for unknown routes
        return Reply.text(413, f"request body too large: {exc.text}").to_web()
    except Exception as exc:
        reply = problem_for(exc)
        if reply is None:
            log.exception("unhandled error serving %s %s", request.method, request.path)
            reply = Reply.text(500, "internal error (see the node's log)")
        return reply.to_web()


class ClientMistakeLogFilter(logging.Filter):
    """aiohttp logs a client's malformed request (a NUL byte in a header, a bad request line)
    as an ERROR with a traceback, so any client could flood the log. Such a record becomes one
    WARNING line, at most one per `every_s`, with the count of those left out meanwhile."""

    def __init__(self, every_s: float = 10.0) -> None:
        super().__init__()
        self.every_s, self._last, self._left_out = every_s, float("-inf"), 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = time.monotonic()
        if now - self._last < self.every_s:
            self._left_out += 1
            return False
        reason = str(exc.message).strip().splitlines()[0] if exc.message else type(exc).__name__
        more = f" ({self._left_out} more since the last such line)" if self._left_out else ""
        record.msg, record.args = "malformed request from a client, answered 400: %s%s", (reason, more)
        record.levelno, record.levelname, record.exc_info, record.exc_text = logging.WARNING, "WARNING", None, None
        self._last, self._left_out = now, 0
        return True
