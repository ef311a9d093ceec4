"""HTTP errors and the one middleware that translates every failure into a status and a line.

Handlers raise `HTTPProblem` (or let a `node.errors` exception escape); nothing else in
`api/` builds error responses. No traceback ever reaches a client.
"""

from __future__ import annotations

import logging

from aiohttp import web

from node.errors import NoLeaderError, NotAppliedError, OutcomeUnknownError

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


def _text(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=reason + "\n", headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except HTTPProblem as exc:
        return _text(exc.status, exc.reason, exc.headers)
    except NoLeaderError as exc:
        return _text(503, f"no leader: {exc}", {"Retry-After": RETRY_AFTER_S})
    except NotAppliedError as exc:
        return _text(503, f"not applied: {exc}", {"Retry-After": RETRY_AFTER_S})
    except OutcomeUnknownError as exc:
        return _text(503, f"outcome unknown: {exc}", {"Retry-After": RETRY_AFTER_S})
    except web.HTTPRequestEntityTooLarge as exc:
        return _text(413, f"request body too large (limit {exc.max_size} bytes)")
    except web.HTTPException:
        raise  # aiohttp's own 404/405 for unknown routes
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return _text(500, "internal error (see the node's log)")
