"""The lean HTTP/1.1 front (api/fast_http.py) over raw sockets on 127.0.0.1: the same answers as
aiohttp's, in order, and everything it does not serve handed to aiohttp intact."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiohttp import web
from multidict import CIMultiDict

from api.app import make_app
from api.context import CTX, ApiConfig
from api.fast_http import LeanProtocol
from api.forward import FORWARDED_HEADER
from node.errors import NoLeaderError
from tests.api.fake_node import FakeNode

CONFIG = ApiConfig(max_value_bytes=1024, request_timeout_s=2.0)
ONLY_AIOHTTP = {"Date", "Server", "Connection", "Keep-Alive"}  # framing and decoration, not content


@contextlib.asynccontextmanager
async def served(node: FakeNode, lean: bool, config: ApiConfig = CONFIG, front: bool = False,
                 protocols: list | None = None):
    """The node's app on 127.0.0.1, behind the lean front (as api.serve wires it) or aiohttp alone;
    `front`: with lean=False, aiohttp behind LeanProtocol(lean=False), as `--http-front aiohttp` is wired;
    `protocols` collects the LeanProtocol of each connection."""
    app = make_app(node, config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    assert runner.server is not None
    def lean_front() -> LeanProtocol:
        protocol = LeanProtocol(app[CTX], runner.server, lean)
        if protocols is not None:
            protocols.append(protocol)
        return protocol
    factory = lean_front if lean or front else runner.server
    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await runner.cleanup()


def request(method: str, target: str, body: bytes = b"", headers: str = "") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: test\r\n{headers}"
    if body or method == "PUT":
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, CIMultiDict, bytes]:
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: CIMultiDict[str] = CIMultiDict()
    for line in filter(None, lines[1:]):
        name, _, value = line.partition(": ")
        headers.add(name, value)
    return status, headers, await reader.readexactly(int(headers.get("Content-Length", "0")))


async def exchange(port: int, data: bytes, count: int) -> list[tuple[int, CIMultiDict, bytes]]:
    """Send `data` in one write (pipelined requests) and read `count` responses."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return [await asyncio.wait_for(read_response(reader), 5) for _ in range(count)]
    finally:
        writer.close()
        await writer.wait_closed()  # before the server stops (aiohttp would linger on a request body)


def content(response) -> tuple[int, dict, bytes]:
    status, headers, body = response
    return status, {k: v for k, v in headers.items() if k not in ONLY_AIOHTTP}, body


async def both_fronts(data: bytes, count: int, setup=lambda node: None):
    """The responses of the lean front and of aiohttp alone to the same bytes, each over a fresh node."""
    answers = []
    for lean in (True, False):
        node = FakeNode()
        setup(node)
        async with served(node, lean) as port:
            answers.append((node, await exchange(port, data, count)))
    return answers


SEQUENCE = [
    request("PUT", "/v1/kv/a?flags=5", b"one"),
    request("GET", "/v1/kv/a"),
    request("GET", "/v1/kv/a?raw"),
    request("PUT", "/v1/kv/a?cas=1", b"two"),
    request("PUT", "/v1/kv/a?cas=1", b"three"),
    request("GET", "/v1/kv/a?stale&dc=x"),
    request("DELETE", "/v1/kv/a"),
    request("GET", "/v1/kv/a"),
    request("PUT", "/v1/kv/b?flags=x", b"v"),
    request("DELETE", "/v1/kv/b?cas=0"),
    request("GET", "/v1/kv/"),
]


async def test_pipelined_requests_are_answered_in_order_as_aiohttp_answers_them():
    (lean_node, lean), (_, plain) = await both_fronts(b"".join(SEQUENCE), len(SEQUENCE))
    assert [content(r) for r in lean] == [content(r) for r in plain]
    assert [r[0] for r in lean] == [200, 200, 200, 200, 200, 200, 200, 404, 400, 200, 400]
    assert [r[2] for r in lean[:5]] == [b"true", b'[{"LockIndex": 0, "Key": "a", "Flags": 5, "Value": "b25l", '
                                        b'"CreateIndex": 1, "ModifyIndex": 1}]', b"one", b"true", b"false"]
    assert all("Server" not in r[1] for r in lean)  # the lean path answered every one of them
    assert lean_node.state.get("a") is None and len(lean_node.proposed) == 4


async def test_errors_are_answered_alike_by_both_fronts():
    def no_leader(node):
        node.fail_propose = NoLeaderError("no leader elected within 2s")
    (_, lean), (_, plain) = await both_fronts(request("PUT", "/v1/kv/k", b"v"), 1, no_leader)
    assert [content(r) for r in lean] == [content(r) for r in plain]
    assert lean[0][0] == 503 and lean[0][1]["Retry-After"] == "1"
    assert lean[0][2] == b"no leader: no leader elected within 2s\n"


async def test_a_request_the_lean_path_does_not_serve_is_handed_to_aiohttp_with_what_follows():
    node = FakeNode()
    data = b"".join([request("PUT", "/v1/kv/dir/a", b"x"), request("GET", "/v1/kv/dir/?recurse"),
                     request("GET", "/v1/kv/dir/a?raw"), request("PUT", "/v1/kv/dir/%C3%A9", b"y")])
    async with served(node, lean=True) as port:
        put, recurse, raw, utf8 = await exchange(port, data, 4)
    assert (put[0], put[2], "Server" in put[1]) == (200, b"true", False)
    assert recurse[0] == 200 and b'"Key": "dir/a"' in recurse[2] and "Server" in recurse[1]
    assert (raw[0], raw[2]) == (200, b"x")
    assert utf8[0] == 200 and node.state.get("dir/é").value == b"y"


@pytest.mark.parametrize("line", [b"GARBAGE\r\n\r\n", b"GET /v1/kv/a HTTP/1.1 extra\r\nHost: x\r\n\r\n",
                                  b"GET /v1/kv/a HTTP/9.9\r\nHost: x\r\n\r\n"])
async def test_a_malformed_request_is_400(line):
    async with served(FakeNode(), lean=True) as port:
        [(status, _, body)] = await exchange(port, line, 1)
    assert status == 400 and b"Traceback" not in body


async def test_content_length_over_the_limit_is_413_before_the_body_is_sent():
    node = FakeNode()
    async with served(node, lean=True) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n")
        status, _, body = await asyncio.wait_for(read_response(reader), 5)
        writer.close()
        await writer.wait_closed()
    assert (status, body) == (413, b"value too large: 1025 bytes, the limit is 1024\n")
    assert node.proposed == []


async def test_connection_close_is_honoured():
    async with served(FakeNode(), lean=True) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("PUT", "/v1/kv/k", b"v", headers="Connection: close\r\n"))
        status, headers, body = await asyncio.wait_for(read_response(reader), 5)
        assert (status, body, headers["Connection"]) == (200, b"true", "close")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closed the connection
        writer.close()
        await writer.wait_closed()


async def test_a_lean_default_read_on_a_follower_is_forwarded_to_the_leader(serve):
    leader = FakeNode("leader", "127.0.0.1:7001")
    leader.put("k", b"from-leader")
    seen: list = []
    leader_client = await serve(leader, seen=seen)
    follower = FakeNode("follower", "127.0.0.1:7002", leader=False)
    follower.put("k", b"from-follower")
    follower.follow(leader.raft_address, f"127.0.0.1:{leader_client.server.port}")
    async with served(follower, lean=True) as port:
        default, stale = await exchange(port, request("GET", "/v1/kv/k?raw") + request("GET", "/v1/kv/k?raw&stale"), 2)
    assert (default[0], default[2], stale[2]) == (200, b"from-leader", b"from-follower")
    assert [(path, headers[FORWARDED_HEADER]) for _, path, headers in seen] == [("/v1/kv/k?raw", "follower")]


async def test_a_repeated_parameter_means_the_same_on_both_fronts():
    data = request("PUT", "/v1/kv/a?flags=1&flags=2", b"v")
    (lean_node, _), (plain_node, _) = await both_fronts(data, 1)
    assert lean_node.state.get("a").flags == plain_node.state.get("a").flags


async def test_raw_utf8_bytes_in_the_target_are_refused_like_aiohttp_does():
    data = "PUT /v1/kv/é HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv".encode()
    (lean_node, lean), (plain_node, plain) = await both_fronts(data, 1)
    assert plain[0][0] == 400 and list(plain_node.state.entries) == []
    assert lean[0][0] == 400 and list(lean_node.state.entries) == []
