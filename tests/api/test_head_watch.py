"""The head deadline of a connection handed to aiohttp (api/head_watch.py) over a fake transport
and a fake inner protocol: what it cuts, and that a loop stalled past the deadline does not cut a
request whose head arrived whole and is still on its way to its handler."""

from __future__ import annotations

import asyncio
import time

from api.head_watch import HeadWatch, HeadWatches
from tests.support.wait import wait_until_async

TIMEOUT_S = 0.05


class FakeTransport:
    def __init__(self) -> None:
        self.written, self.closed = b"", False

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


class FakeProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.received = b""

    def data_received(self, data: bytes) -> None:
        self.received += data


def watched() -> tuple[HeadWatch, FakeTransport, FakeProtocol]:
    inner, transport = FakeProtocol(), FakeTransport()
    watch = HeadWatch(inner, TIMEOUT_S, HeadWatches())
    watch.connection_made(transport)
    return watch, transport, inner


async def test_a_head_that_never_becomes_a_request_is_cut_with_408():
    watch, transport, inner = watched()
    watch.data_received(b"PUT /v1/kv/slow HTTP/1.1\r\n")
    await wait_until_async("the connection cut", lambda: transport.closed, timeout=5)
    assert inner.received == b"PUT /v1/kv/slow HTTP/1.1\r\n"
    assert transport.closed and transport.written.startswith(b"HTTP/1.1 408 ")
    assert watch.watches.cut_off == 1


async def test_a_request_handed_off_after_a_stall_past_the_deadline_is_not_cut():
    loop = asyncio.get_running_loop()
    watch, transport, _ = watched()
    watch.data_received(b"GET /v1/kv/k HTTP/1.1\r\nHost: x\r\n\r\n")
    loop.call_soon(loop.call_soon, watch.request_started)  # aiohttp's two turns to the handler
    time.sleep(TIMEOUT_S * 2)  # noqa: ASYNC251 (the point: the loop stalls before either turn ran)
    await asyncio.sleep(TIMEOUT_S * 4)  # the duration is the point: nothing may happen
    assert not transport.closed and transport.written == b"" and watch.handling == 1
    watch.request_finished()
    watch.data_received(b"PUT /v1/kv/slow HTTP/1.1\r\n")  # the next head still has its deadline
    await wait_until_async("the connection cut", lambda: transport.closed, timeout=5)
    assert watch.watches.cut_off == 1
