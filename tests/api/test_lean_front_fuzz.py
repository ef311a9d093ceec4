"""The lean front (api/fast_http.py) and aiohttp alone, fed the same request smuggling shapes (by
hand) and random requests (hypothesis): both fronts must give the same answers and leave the
same store, with no 5xx
(test_lean_front.py has the ordinary cases). Each shape is followed by a request that closes
the connection, so that both fronts show how they framed what came before it."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.api.fake_node import FakeNode
from tests.api.test_lean_front import content, read_response, served
from tests.support.fuzz import fuzz_settings

PUT_A = b"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\n"
SMUGGLING = {
    "Content-Length and Transfer-Encoding": PUT_A + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                                            b"0\r\n\r\nPUT /v1/kv/smuggled HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
    "Transfer-Encoding then Content-Length": PUT_A + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
                                             b"1\r\nx\r\n0\r\n\r\n",
    "duplicate Content-Length, different": PUT_A + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
    "duplicate Content-Length, same": PUT_A + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    "Content-Length with a sign": PUT_A + b"Content-Length: +1\r\n\r\nx",
    "Content-Length with spaces inside": PUT_A + b"Content-Length: 1 1\r\n\r\nx",
    "obs-fold header": PUT_A + b"Content-Length: 1\r\nX-A: a\r\n b\r\n\r\nx",
    "obs-fold Content-Length": PUT_A + b"X-A: a\r\n Content-Length: 5\r\nContent-Length: 1\r\n\r\nx",
    "bare CR in a header": PUT_A + b"X-A: a\rContent-Length: 5\r\nContent-Length: 1\r\n\r\nx",
    "bare LF line ending": b"PUT /v1/kv/a HTTP/1.1\nHost: x\nContent-Length: 1\n\nx",
    "huge chunk size": PUT_A + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nx\r\n0\r\n\r\n",
    "chunk size with extension and junk": PUT_A + b"Transfer-Encoding: chunked\r\n\r\n1;a=b\r\nx\r\n0x\r\n\r\n",
    "Transfer-Encoding not chunked": PUT_A + b"Transfer-Encoding: gzip\r\n\r\nx",
    "space before the colon": PUT_A + b"Content-Length : 1\r\n\r\nx",
    "NUL in a header": PUT_A + b"Content-Length: 1\r\nX-A: \x00\r\n\r\nx",
    "header name with a space": PUT_A + b"Content Length: 1\r\n\r\nx",
    "HTTP/1.0 without length": b"PUT /v1/kv/a HTTP/1.0\r\n\r\nx",
    "absolute-form target": b"PUT http://evil/v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
    "target with a fragment": b"PUT /v1/kv/a#b HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
    "Expect 100-continue": PUT_A + b"Expect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
}
FOLLOW = b"GET /v1/kv/?recurse HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"  # what each front saw


async def responses(lean: bool, data: bytes) -> tuple[list, dict]:
    """Every response to `data` sent at once, until the server closes, and the store afterwards."""
    node = FakeNode()
    async with served(node, lean) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(data)
            answers = []
            for _ in range(64):  # bounded: no input here holds that many requests
                try:
                    answers.append(content(await asyncio.wait_for(read_response(reader), 5)))
                except (asyncio.IncompleteReadError, ConnectionError):
                    break  # closed: after FOLLOW, or after a request it refused
                except TimeoutError:
                    break  # still waiting for bytes that will not come (both fronts alike, or the test fails)
        finally:
            writer.close()
            await writer.wait_closed()
    return answers, dict(node.state.entries.items())


async def compare(data: bytes) -> list:
    lean, plain = await responses(True, data), await responses(False, data)
    if lean != plain:
        # aiohttp drops the answers to requests it read in the same chunk as a malformed one and
        # answers the 400 alone; the lean front answers those requests first. Same framing all the
        # same: the 400 names the bytes where parsing failed, and it must be the same 400.
        (lean_answers, _), (plain_answers, _) = lean, plain
        assert len(plain_answers) == 1 and plain_answers[0][0] == 400, (lean, plain)
        assert lean_answers[-1] == plain_answers[0], (lean, plain)
    return lean[0]


@pytest.mark.parametrize("name", SMUGGLING)
async def test_smuggling_shapes_get_the_same_answers_from_both_fronts(name):
    answers = await compare(SMUGGLING[name] + FOLLOW)
    assert all(status < 500 for status, _, _ in answers), answers


HEADER_LINES = [b"Host: x", b"Content-Length: 1", b"Content-Length: 0", b"Content-Length: 2", b"Content-Length:1",
                b"Content-Length: 01", b"Content-Length: -1", b"Content-Length: 1x", b"content-length: 1",
                b"X-A: a", b" X-A: b", b"\tX-A: c", b"X-A : d", b"X A: e", b"X-A: \x01", b"X-A:", b":", b"X-A",
                b"X-A: a\rb", b"Connection: close", b"Connection: keep-alive", b"Expect: 100-continue",
                b"X-Consul-Token: t"]
TARGETS = [b"/v1/kv/a", b"/v1/kv/a?raw", b"/v1/kv/a?cas=0", b"/v1/kv/a?flags=7", b"/v1/kv/a%20b", b"/v1/kv/a#f",
           b"/v1/kv/", b"/v1/kv/a?stale&stale", b"/v1/kv/a?x=1", b"/v1/kv/\x7f", b"*", b"/v1/kv/a b"]


@fuzz_settings(40)
@given(st.sampled_from([b"GET", b"PUT", b"DELETE", b"POST", b"get"]), st.sampled_from(TARGETS),
       st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.1 ", b"http/1.1"]),
       st.lists(st.sampled_from(HEADER_LINES), max_size=5), st.binary(max_size=3))
def test_random_requests_get_the_same_answers_from_both_fronts(method, target, version, headers, body):
    # Bodies no longer than any Content-Length offered: neither front waits for bytes that never come.
    head = b" ".join([method, target, version]) + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"
    answers = asyncio.run(compare(head + body + FOLLOW))
    assert all(status < 500 for status, _, _ in answers), answers
