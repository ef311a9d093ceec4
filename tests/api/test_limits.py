"""HTTP limits over the fake node, on 127.0.0.1 sockets: connections and blocking queries per
client (429), request read deadlines (408), URL length (414), body sizes (413), on both fronts."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import ClientSession

from api.context import ApiConfig
from tests.api.fake_node import FakeNode
from tests.api.test_blocking import held
from tests.api.test_lean_front import exchange, read_response, request, served
from tests.support.wait import wait_until_async

LIMITS = ApiConfig(max_value_bytes=1024, max_txn_bytes=2048, request_timeout_s=2.0, max_conns_per_client=3,
                   max_blocking_per_client=2, head_timeout_s=0.3, body_timeout_s=0.3, max_url_bytes=256)


async def open_conn(port: int):
    return await asyncio.open_connection("127.0.0.1", port)


async def close(writer) -> None:
    writer.close()
    await writer.wait_closed()


async def answer_and_eof(reader) -> tuple[int, bytes, bytes]:
    """The one response the server sends before it closes, and what follows it (b"" at EOF)."""
    status, _, body = await asyncio.wait_for(read_response(reader), 5)
    return status, body, await asyncio.wait_for(reader.read(), 5)


@pytest.mark.parametrize("lean", [True, False])
async def test_connections_beyond_the_per_client_limit_get_429_and_are_closed(lean):
    async with served(FakeNode(), lean=lean, config=LIMITS, front=True) as port:
        conns = [await open_conn(port) for _ in range(3)]
        for reader, writer in conns:  # each one served: admitted before the next connects
            writer.write(request("GET", "/v1/kv/absent"))
            assert (await asyncio.wait_for(read_response(reader), 5))[0] == 404
        reader, writer = await open_conn(port)
        status, body, rest = await answer_and_eof(reader)
        assert (status, rest) == (429, b"")
        assert body == b"Your IP is issuing too many concurrent connections, please rate limit your calls\n"
        await close(writer)
        await close(conns.pop()[1])  # one closes: a new connection is admitted again

        async def served_again() -> bool:
            reader, writer = await open_conn(port)
            try:
                writer.write(request("GET", "/v1/kv/absent"))
                return (await asyncio.wait_for(read_response(reader), 5))[0] == 404
            except (asyncio.IncompleteReadError, ConnectionError):
                return False
            finally:
                await close(writer)
        await wait_until_async("a connection to be admitted again", served_again, timeout=5)
        for _, writer in conns:
            await close(writer)


@pytest.mark.parametrize("lean", [True, False])
@pytest.mark.parametrize("sent", [b"", b"PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\nContent-Le"])
async def test_a_client_slow_to_send_its_head_gets_408_and_is_closed(lean, sent):
    node = FakeNode()
    async with served(node, lean=lean, config=LIMITS, front=True) as port:
        reader, writer = await open_conn(port)
        writer.write(sent)
        status, body, rest = await answer_and_eof(reader)
        await close(writer)
    assert (status, body, rest) == (408, b"request head not received within 0.3 s\n", b"")
    assert node.proposed == []


async def test_a_lean_request_whose_body_trickles_gets_408_and_changes_nothing():
    node = FakeNode()
    async with served(node, lean=True, config=LIMITS, front=True) as port:
        reader, writer = await open_conn(port)
        writer.write(b"PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
        status, body, rest = await answer_and_eof(reader)
        await close(writer)
    assert (status, body, rest) == (408, b"request body not received within 0.3 s\n", b"")
    assert node.proposed == []


@pytest.mark.parametrize("lean", [True, False])
async def test_a_head_trickling_after_aiohttp_took_the_connection_gets_408(lean):
    node = FakeNode()
    node.put("k", b"v")
    async with served(node, lean=lean, config=LIMITS, front=True) as port:
        reader, writer = await open_conn(port)
        writer.write(request("GET", "/v1/kv/k?index=1&wait=600ms"))  # not lean, held past the head timeout
        assert (await asyncio.wait_for(read_response(reader), 5))[0] == 200  # a request in aiohttp's hands is not cut
        writer.write(b"PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\n")  # and then a head that never ends
        status, body, rest = await answer_and_eof(reader)
        await close(writer)
    assert (status, body, rest) == (408, b"request head not received within 0.3 s\n", b"")
    assert node.proposed == []


@pytest.mark.parametrize("path", ["/v1/txn", "/v1/kv/slow?recurse=x"])
async def test_a_body_trickling_to_aiohttp_gets_408_and_changes_nothing(path):
    node = FakeNode()
    async with served(node, lean=True, config=LIMITS, front=True) as port:
        reader, writer = await open_conn(port)
        writer.write(f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n[".encode())
        status, _, body = await asyncio.wait_for(read_response(reader), 5)
        await close(writer)
    assert (status, body) == (408, b"request body not received within 0.3 s\n")
    assert node.proposed == []


@pytest.mark.parametrize("lean", [True, False])
async def test_a_url_over_the_limit_is_414_on_both_fronts(lean):
    key = "k" * 300
    async with served(FakeNode(), lean=lean, config=LIMITS, front=True) as port:
        reader, writer = await open_conn(port)
        writer.write(request("GET", f"/v1/kv/{key}"))
        status, _, body = await asyncio.wait_for(read_response(reader), 5)
        await close(writer)
        reader, writer = await open_conn(port)
        writer.write(f"GET /v1/kv/{key * 2}".encode())  # the request line alone is already too long
        status_unfinished, body_unfinished, rest = await answer_and_eof(reader)
        await close(writer)
    assert (status, body) == (414, b"URL too long: 307 bytes, the limit is 256\n")
    assert (status_unfinished, rest) == (414, b"") and body_unfinished.startswith(b"URL too long")


async def test_chunked_bodies_over_their_limit_are_413_and_change_nothing(serve):
    node = FakeNode()
    client = await serve(node, LIMITS)

    async def chunks(size: int):
        for _ in range(size // 512):
            yield b"x" * 512

    resp = await client.put("/v1/kv/big", data=chunks(4096))
    assert (resp.status, await resp.text()) == (413, "value too large: over 1024 bytes, the limit is 1024\n")
    resp = await client.put("/v1/txn", data=chunks(8192))
    assert (resp.status, await resp.text()) == (413, "transaction too large: over 2048 bytes, the limit is 2048\n")
    assert node.proposed == []
    resp = await client.put("/v1/kv/fits", data=chunks(1024))
    assert resp.status == 200 and node.state.get("fits").value == b"x" * 1024


async def test_blocking_queries_beyond_the_per_client_limit_get_429(serve):
    node = FakeNode()
    node.put("watched", b"v1")
    client = await serve(node, LIMITS)
    first = await held(node, client, "/v1/kv/watched", index="1", wait="30s")
    second = await held(node, client, "/v1/kv/watched", index="1", wait="30s")
    refused = await client.get("/v1/kv/watched", params={"index": "1", "wait": "30s"})
    assert refused.status == 429
    assert await refused.text() == "too many blocking queries from 127.0.0.1: 2 held, the limit is 2\n"
    assert (await client.get("/v1/kv/watched")).status == 200  # plain reads are not limited
    assert (await client.put("/v1/kv/watched", data=b"v2")).status == 200
    assert [(await asyncio.wait_for(t, 5)).status for t in (first, second)] == [200, 200]
    third = await held(node, client, "/v1/kv/watched", index="2", wait="30s")  # the slots are free again
    assert (await client.put("/v1/kv/watched", data=b"v3")).status == 200
    assert (await asyncio.wait_for(third, 5)).status == 200


async def test_the_limits_leave_ordinary_clients_alone():
    node = FakeNode()
    async with served(node, lean=True, config=LIMITS, front=True) as port, ClientSession() as session:
        for i in range(5):  # one kept-alive connection, many requests, none near a limit
            async with session.put(f"http://127.0.0.1:{port}/v1/kv/k{i}", data=b"v") as resp:
                assert resp.status == 200
    assert len(node.proposed) == 5


KEYS = [("%FF", 400, b"invalid key: not valid UTF-8\n"), ("%ED%A0%80", 400, b"invalid key: not valid UTF-8\n"),
        ("a%00b", 400, b"invalid key: contains a newline or NUL\n"),
        ("a%0Ab", 400, b"invalid key: contains a newline or NUL\n"),
        ("%zz", 400, b"invalid key: malformed percent-escape\n"),
        ("a%", 400, b"invalid key: malformed percent-escape\n"),
        ("k" * 513, 400, b"invalid key: 513 bytes, the limit is 512\n"),
        ("%C3%A9" * 256 + "k", 400, b"invalid key: 513 bytes, the limit is 512\n"),
        ("%C3%A9" * 256, 200, b"true"), ("k" * 512, 200, b"true"), ("a%2Fb%25FF", 200, b"true")]


@pytest.mark.parametrize("lean", [True, False])
async def test_keys_are_1_to_512_bytes_of_utf8_without_nul_or_newline_on_both_fronts(lean):
    node = FakeNode()
    async with served(node, lean=lean) as port:  # the default URL limit
        answers = await exchange(port, b"".join(request("PUT", f"/v1/kv/{key}", b"v") for key, _, _ in KEYS), len(KEYS))
    assert [(status, body) for status, _, body in answers] == [(status, body) for _, status, body in KEYS]
    assert sorted(node.state.entries) == sorted(["é" * 256, "k" * 512, "a/b%FF"])


@pytest.mark.parametrize(("key", "reason"), [("\ud800", "invalid key: not valid UTF-8"),
                                             ("a\x00b", "invalid key: contains a newline or NUL"),
                                             ("a\nb", "invalid key: contains a newline or NUL")])
async def test_a_transaction_key_follows_the_kv_key_rules(serve, key, reason):
    node = FakeNode()
    client = await serve(node, LIMITS)
    body = json.dumps([{"KV": {"Verb": "set", "Key": "fine", "Value": "dg=="}},
                       {"KV": {"Verb": "set", "Key": key, "Value": "dg=="}}])  # a lone surrogate was a 500
    resp = await client.put("/v1/txn", data=body)
    assert (resp.status, await resp.text()) == (400, f"operation 1: {reason}\n")
    assert node.proposed == []
