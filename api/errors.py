"""HTTP errors and the one middleware that translates every failure into a status and a line.

Handlers raise `HTTPProblem` (or let a `node.errors` exception escape); nothing else in
`api/` builds error responses (the lean front in api.fast_http uses `problem_for` too).
No traceback ever reaches a client.
"""

from __future__ import annotations

import logging

from aiohttp import web

from api.reply import Reply
from node.errors import NoLeaderError, NotAppliedError, NotReadyError, OutcomeUnknownError

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
    if isinstance(exc, NotReadyError):
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
