"""Per-client limits and bounded request reads, shared by both HTTP fronts (api/DESIGN.md, "Limits").

A client is its IP address, as Consul's `limits.http_max_conns_per_client` counts it (several
clients behind one NAT or proxy count as one). Everything here runs on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from api.errors import HTTPProblem

# Consul's answer (hashicorp/go-connlimit) to a client over its connection limit, then it closes.
_TOO_MANY_CONNS = "Your IP is issuing too many concurrent connections, please rate limit your calls\n"
TOO_MANY_CONNS_REPLY = (f"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\n"
                        f"Content-Length: {len(_TOO_MANY_CONNS)}\r\nConnection: close\r\n\r\n"
                        f"{_TOO_MANY_CONNS}").encode("ascii")
_SWEEP_EVERY = 1024  # admissions between sweeps of addresses whose connections all closed


def client_of(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


class ClientConnections:
    """Open HTTP connections per client address, at most `limit` each.

    A connection counts from its admission until its transport is closing. The count is taken
    from the transports themselves (`is_closing()`), not from close callbacks, because a
    connection changes protocol when the lean front hands it to aiohttp and would otherwise
    need both protocols to report its end.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, list[asyncio.BaseTransport]] = {}
        self._admitted = 0

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        client = client_of(transport)
        live = [t for t in self._open.get(client, ()) if not t.is_closing()]
        if len(live) >= self.limit:
            self._open[client] = live
            return False
        live.append(transport)
        self._open[client] = live
        self._admitted += 1
        if self._admitted % _SWEEP_EVERY == 0:
            self._sweep()
        return True

    def count(self, client: str) -> int:
        return sum(not t.is_closing() for t in self._open.get(client, ()))

    def _sweep(self) -> None:
        for client in [c for c, ts in self._open.items() if all(t.is_closing() for t in ts)]:
            del self._open[client]


class BlockingSlots:
    """Blocking queries (`?index=`) held at once per client address, at most `limit` each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}

    @contextmanager
    def hold(self, client: str) -> Iterator[None]:
        held = self._held.get(client, 0)
        if held >= self.limit:
            raise HTTPProblem(429, f"too many blocking queries from {client}: {held} held, the limit is {self.limit}")
        self._held[client] = held + 1
        try:
            yield
        finally:
            left = self._held[client] - 1
            if left:
                self._held[client] = left
            else:
                del self._held[client]


async def read_body(request: web.Request, limit: int, what: str, timeout_s: float) -> bytes:
    """The request's body, refused with 413 past `limit` bytes (announced or sent, chunked
    included, without buffering more than the limit) and with 408 when it does not arrive
    within `timeout_s` (a client trickling it holds no handler for longer)."""
    if request.content_length is not None and request.content_length > limit:
        raise HTTPProblem(413, f"{what} too large: {request.content_length} bytes, the limit is {limit}")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await request.content.read(64 * 1024):
                body += chunk
                if len(body) > limit:
                    raise HTTPProblem(413, f"{what} too large: over {limit} bytes, the limit is {limit}")
    except TimeoutError:
        raise HTTPProblem(408, f"request body not received within {timeout_s:g} s", {"Connection": "close"}) from None
    return bytes(body)


def url_too_long(size: int, limit: int) -> HTTPProblem:
    return HTTPProblem(414, f"URL too long: {size} bytes, the limit is {limit}")


def url_limit_middleware(limit: int):
    """414 for a request target over `limit` bytes, before routing (the lean front checks its own)."""
    @web.middleware
    async def check_url(request: web.Request, handler):
        if len(request.raw_path) > limit:
            raise url_too_long(len(request.raw_path), limit)  # error_middleware answers it
        return await handler(request)
    return check_url
