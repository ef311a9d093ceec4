"""The lean HTTP front (api/fast_http.py) against a real node over raw sockets: framing,
pipelining, keep-alive, and the hand-off of everything else to aiohttp on the same connection."""

from __future__ import annotations

import socket
import time

import pytest


@pytest.fixture(scope="module")
def cluster(shared_cluster):
    """The tests here write keys of their own and leave the nodes running: one cluster for all."""
    return shared_cluster


def connect(node) -> socket.socket:
    host, port = node.http.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict, bytes]]:
    """`count` complete responses (Content-Length framed) from the socket."""
    buf, out = b"", []
    deadline = time.monotonic() + 10
    while len(out) < count:
        head_end = buf.find(b"\r\n\r\n")
        if head_end >= 0:
            lines = buf[:head_end].decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            length = int(headers.get("content-length", "0"))
            if len(buf) >= head_end + 4 + length:
                out.append((int(lines[0].split()[1]), headers, buf[head_end + 4:head_end + 4 + length]))
                buf = buf[head_end + 4 + length:]
                continue
        assert time.monotonic() < deadline, f"timed out with {len(out)} of {count} responses: {buf[:200]!r}"
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(out)} of {count} responses"
        buf += chunk
    return out


def test_pipelined_requests_are_answered_in_order_and_unusual_ones_go_to_aiohttp(cluster):
    node = cluster.leader()
    with connect(node) as s:
        s.sendall(b"PUT /v1/kv/front/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
                  b"PUT /v1/kv/front/a?cas=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo"
                  b"GET /v1/kv/front/a?raw HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /v1/kv/front/missing HTTP/1.1\r\nHost: x\r\n\r\n")
        (s1, _, b1), (s2, _, b2), (s3, h3, b3), (s4, h4, b4) = read_responses(s, 4)
        assert (s1, b1, s2, b2) == (200, b"true", 200, b"false")  # the CAS names a wrong index
        assert (s3, b3, h3["content-type"]) == (200, b"one", "text/plain")
        assert s4 == 404 and b4 == b"" and int(h4["x-consul-index"]) >= 1
        assert "server" not in h3, "served by the lean front, not aiohttp"
        # A prefix read is not lean: aiohttp takes the connection over, mid-pipeline included.
        s.sendall(b"GET /v1/kv/front/?recurse HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /v1/kv/front/a?raw HTTP/1.1\r\nHost: x\r\n\r\n")
        (s5, h5, b5), (s6, h6, b6) = read_responses(s, 2)
        assert s5 == 200 and b'"Key": "front/a"' in b5 and "aiohttp" in h5["server"]
        assert (s6, b6) == (200, b"one") and "aiohttp" in h6["server"]


def test_a_request_trickling_in_byte_by_byte_is_served(cluster):
    node = cluster.leader()
    request = b"PUT /v1/kv/front/slow?flags=7 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nslow!"
    with connect(node) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(request)):
            s.sendall(request[i:i + 1])
        [(status, _, body)] = read_responses(s, 1)
        assert (status, body) == (200, b"true")
        s.sendall(b"GET /v1/kv/front/slow HTTP/1.1\r\nHost: x\r\n\r\n")
        [(status, _, body)] = read_responses(s, 1)
        assert status == 200 and b'"Flags": 7' in body and b'"Value": "c2xvdyE="' in body


def test_bad_input_on_the_lean_path_gets_one_line_and_the_connection_survives(cluster):
    node = cluster.nodes[1]
    with connect(node) as s:
        s.sendall(b"PUT /v1/kv/front/x?cas=abc HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx"
                  b"PUT /v1/kv/" + b"k" * 513 + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx"
                  b"GET /v1/kv/front/x?stale&consistent HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /v1/kv/front/x?stale HTTP/1.1\r\nHost: x\r\n\r\n")
        replies = read_responses(s, 4)
    assert [r[0] for r in replies] == [400, 400, 400, 404]
    for _, headers, body in replies[:3]:
        assert body.count(b"\n") == 1 and b"Traceback" not in body and headers["content-type"].startswith("text/plain")
    assert b"invalid cas" in replies[0][2] and b"invalid key" in replies[1][2] and b"Cannot specify" in replies[2][2]


def test_oversized_values_garbage_and_connection_close(cluster):
    node = cluster.leader()
    with connect(node) as s:  # too large for the lean path: aiohttp refuses it with 413
        s.sendall(b"PUT /v1/kv/front/big HTTP/1.1\r\nHost: x\r\nContent-Length: 600000\r\n\r\n" + b"x" * 600000)
        [(status, _, body)] = read_responses(s, 1)
        assert status == 413 and b"too large" in body
    with connect(node) as s:  # not HTTP at all: aiohttp's parser answers 400
        s.sendall(b"HELLO THERE\r\n\r\n")
        [(status, _, _)] = read_responses(s, 1)
        assert status == 400
    with connect(node) as s:
        s.sendall(b"PUT /v1/kv/front/c HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nc")
        [(status, headers, body)] = read_responses(s, 1)
        assert (status, body, headers.get("connection")) == (200, b"true", "close")
        assert s.recv(1) == b"", "the server closes the connection after Connection: close"
    assert all(n.alive() for n in cluster.nodes)


def test_a_client_pipelining_megabytes_is_throttled_and_still_answered_in_order(cluster):
    node = cluster.leader()
    value = b"v" * 100_000
    request = b"PUT /v1/kv/front/flood HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + value
    with connect(node) as s:
        s.sendall(request * 40)  # 4 MB at once: more than the front buffers while it is busy
        replies = read_responses(s, 40)
        assert [r[:1] + (r[2],) for r in replies] == [(200, b"true")] * 40
        s.sendall(b"GET /v1/kv/front/flood?raw HTTP/1.1\r\nHost: x\r\n\r\n")
        [(status, _, body)] = read_responses(s, 1)
        assert (status, body) == (200, value)
