"""A request-head deadline for connections the lean front handed to aiohttp.

aiohttp (3.14) bounds a request head only by its keep-alive timer: armed at the connect and
after each response, not pushed back by incoming bytes, it closes a connection still waiting
for a complete head after 75 s. `HeadWatch` sits between the transport and aiohttp's protocol,
passing every call through, and closes the connection when bytes that arrived while no request
was being handled have not become a request (seen by `head_watch_middleware`) within the head
timeout. Bytes arriving while a request is handled (its body, pipelined requests) start no
clock: a body has its own deadline (`api.limits.read_body`) and a pipelined head is parsed at
once. All on the event loop.

A loop stalled past the deadline (a busy or descheduled process) can run the timer while a
complete head is still on its way to its handler: aiohttp passes a parsed request to its handler
task in two loop turns. So the cut waits a few turns after the deadline and is dropped if a
request started meanwhile.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

HANDOFF_TURNS = 3  # loop turns the cut waits after the deadline (aiohttp 3.14's hand-off takes two)


class HeadWatch(asyncio.Protocol):
    def __init__(self, inner: asyncio.Protocol, timeout_s: float, watches: HeadWatches) -> None:
        self.inner, self.timeout_s, self.watches = inner, timeout_s, watches
        self.transport: asyncio.Transport | None = None
        self.handling = 0  # requests of this connection in aiohttp's handlers now
        self.timer: asyncio.Handle | None = None  # the deadline, then the turns before the cut

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.watches.by_transport[transport] = self
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.handling == 0 and self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.timeout_s, self._timed_out)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc) -> None:
        self._stop_clock()
        if self.transport is not None:
            self.watches.by_transport.pop(self.transport, None)
        self.transport = None
        self.inner.connection_lost(exc)

    def request_started(self) -> None:
        self.handling += 1
        self._stop_clock()

    def request_finished(self) -> None:
        self.handling -= 1

    def _stop_clock(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timed_out(self, turns_left: int = HANDOFF_TURNS) -> None:
        self.timer = None
        if self.handling or self.transport is None:
            return
        if turns_left:
            self.timer = asyncio.get_running_loop().call_soon(self._timed_out, turns_left - 1)
            return
        self.watches.cut_off += 1
        if self.transport.get_write_buffer_size() == 0:  # not in the middle of a response
            self.transport.write(self.watches.timeout_reply(self.timeout_s))
        self.transport.close()  # aiohttp's protocol hears of it through connection_lost


class HeadWatches:
    """The watched connections of one app, for the middleware to find a request's watch."""

    def __init__(self) -> None:
        self.by_transport: dict[asyncio.BaseTransport, HeadWatch] = {}
        self.cut_off = 0

    @staticmethod
    def timeout_reply(timeout_s: float) -> bytes:
        reason = f"request head not received within {timeout_s:g} s\n".encode()
        return (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(reason), reason))


def head_watch_middleware(watches: HeadWatches):
    @web.middleware
    async def mark_request(request: web.Request, handler):
        watch = watches.by_transport.get(request.transport) if request.transport is not None else None
        if watch is None:  # not behind the lean front (tests' TestServer), or already closed
            return await handler(request)
        watch.request_started()
        try:
            return await handler(request)
        finally:
            watch.request_finished()
    return mark_request
