"""Route guards for handlers that need one permission whatever they do (operator routes)."""

from __future__ import annotations

import functools

from aiohttp import web

from api.context import CTX


def operator_only(level: str, handler):
    """`handler`, refused with 403 unless the request's token has operator:`level`."""
    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        request.app[CTX].acl.authorize(request.headers, request.query).require_operator(level)
        return await handler(request)
    return guarded
