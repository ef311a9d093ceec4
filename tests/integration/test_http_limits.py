"""HTTP limits on real nodes over real sockets, on both fronts (`--http-front lean` and `aiohttp`):
connections per client (429 and closed), slow clients cut off (408) and their connections freed,
blocking queries per client (429), and the smuggling shapes read alike by both fronts."""

from __future__ import annotations

import re
import socket
import threading

import pytest
import requests

from tests.api.test_lean_front_fuzz import PROBE, SHAPES
from tests.integration.test_http_front import connect, read_responses
from tests.support.cluster import Cluster
from tests.support.wait import wait_until

MAX_CONNS, MAX_BLOCKING, HEAD_TIMEOUT_S = 6, 2, 1.0
LIMIT_FLAGS = ["--max-conns-per-client", str(MAX_CONNS), "--max-blocking-per-client", str(MAX_BLOCKING),
               "--http-head-timeout", str(HEAD_TIMEOUT_S), "--http-body-timeout", str(HEAD_TIMEOUT_S)]


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """One single-node cluster per front, started together."""
    root = tmp_path_factory.mktemp("limits")
    clusters = {front: Cluster(str(root / front), size=1, extra_args=[*LIMIT_FLAGS, "--http-front", front]).start()
                for front in ("lean", "aiohttp")}
    try:
        yield {front: c.leader() for front, c in clusters.items()}
    finally:
        for c in clusters.values():
            c.stop()


def until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (bounded by the socket's timeout)."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def served(node) -> bool:
    try:
        with connect(node) as s:
            s.sendall(b"GET /v1/kv/limits/absent HTTP/1.1\r\nHost: x\r\n\r\n")
            return read_responses(s, 1)[0][0] == 404
    except (AssertionError, OSError):
        return False


@pytest.mark.parametrize("front", ["lean", "aiohttp"])
def test_silent_connections_are_cut_off_and_free_their_slots_for_the_client(nodes, front):
    node = nodes[front]
    wait_until("earlier connections to be released", lambda: served(node), timeout=10)
    silent = [connect(node) for _ in range(MAX_CONNS)]
    try:
        with connect(node) as extra:  # every slot is taken by a connection that sends nothing
            refused = until_closed(extra)
        assert refused.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
        assert refused.endswith(b"Your IP is issuing too many concurrent connections, please rate limit your calls\n")
        for s in silent:  # each is answered 408 and closed once the head timeout passes
            answer = until_closed(s)
            assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
            assert answer.endswith(b"request head not received within 1 s\n")
    finally:
        for s in silent:
            s.close()
    wait_until("a new connection to be served", lambda: served(node), timeout=10)


@pytest.mark.parametrize("front", ["lean", "aiohttp"])
@pytest.mark.parametrize("after", ["", "GET /v1/status/leader"])
def test_a_client_trickling_its_head_is_cut_off(nodes, front, after):
    """As its first request, or once aiohttp owns the connection (after a request it serves)."""
    head = b"PUT /v1/kv/limits/trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv"
    with connect(nodes[front]) as s:
        if after:
            s.sendall(f"{after} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert read_responses(s, 1)[0][0] == 200
        s.settimeout(0.25)
        received = b""
        for byte in head:  # one byte every 0.25 s: the head would take 15 s
            try:
                s.sendall(bytes([byte]))
                received += s.recv(65536)
            except TimeoutError:
                continue  # nothing from the server yet: keep trickling
            except OSError:
                break  # the server closed the connection
            if received.endswith(b"\n") or not received:
                break
    assert received.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), received
    assert requests.get(f"{nodes[front].url}/v1/kv/limits/trickle", timeout=10).status_code == 404


@pytest.mark.parametrize("front", ["lean", "aiohttp"])
def test_a_body_trickling_after_aiohttp_took_the_connection_is_cut_off(nodes, front):
    with connect(nodes[front]) as s:
        s.sendall(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")  # not lean: aiohttp owns it now
        assert read_responses(s, 1)[0][0] == 200
        s.sendall(b"PUT /v1/txn HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[")
        [(status, _, body)] = read_responses(s, 1)
    assert (status, body) == (408, b"request body not received within 1 s\n")


def test_blocking_queries_beyond_the_per_client_limit_get_429(nodes):
    url = f"{nodes['lean'].url}/v1/kv/limits/watched"
    assert requests.put(url, data=b"v1", timeout=10).json() is True
    index = int(requests.get(url, timeout=10).headers["X-Consul-Index"])
    answers: list[requests.Response] = []

    def blocking_get() -> None:
        answers.append(requests.get(url, params={"index": index, "wait": "30s"}, timeout=60))
    threads = [threading.Thread(target=blocking_get) for _ in range(MAX_BLOCKING + 1)]
    for t in threads:
        t.start()
    # One more than the limit at once: whichever comes last is refused at once, the others are held.
    [refused] = wait_until("one blocking query to be refused", lambda: list(answers), timeout=10)
    assert (refused.status_code, refused.text) == (
        429, f"too many blocking queries from 127.0.0.1: {MAX_BLOCKING} held, the limit is {MAX_BLOCKING}\n")
    assert requests.get(url, timeout=10).status_code == 200  # other reads are not limited
    assert requests.put(url, data=b"v2", timeout=10).json() is True  # wakes the held queries
    for t in threads:
        t.join(30)
    assert sorted(r.status_code for r in answers) == [200] * MAX_BLOCKING + [429]
    assert all(r.content.count(b'"Value": "djI="') == 1 for r in answers if r.status_code == 200)
    assert requests.get(url, params={"index": index + 1, "wait": "10ms"}, timeout=10).status_code == 200  # freed


@pytest.mark.parametrize("shape", ["content-length and chunked", "conflicting content-length", "obs-fold hiding "
                                   "content-length", "bare LF inside a CRLF head", "huge chunk size", "no host",
                                   "pipelined lean and others"])
def test_both_fronts_of_a_real_node_read_a_smuggling_shape_alike(nodes, shape):
    def statuses(node) -> list[int]:
        with connect(node) as s:
            s.sendall(SHAPES[shape] + PROBE)
            data = until_closed(s)
        return [int(status) for status in re.findall(rb"^HTTP/1\.[01] (\d{3}) ", data, re.MULTILINE)]
    lean, plain = statuses(nodes["lean"]), statuses(nodes["aiohttp"])
    assert lean == plain and lean and all(status < 500 for status in lean), (lean, plain)
    assert served(nodes["lean"]) and served(nodes["aiohttp"])  # both keep serving
