"""node.errors exceptions become the status and one line api/errors.py promises; never a traceback."""

import json

import pytest

from node.errors import (
    ClusterDiskFullError,
    DiskFullError,
    MembershipBusyError,
    NoLeaderError,
    NotAppliedError,
    NotReadyError,
    OutcomeUnknownError,
    RaftkvError,
)
from tests.api.fake_node import FakeNode

WRITES = [("PUT", "/v1/kv/k", b"v"), ("DELETE", "/v1/kv/k", None),
          ("PUT", "/v1/txn", json.dumps([{"KV": {"Verb": "set", "Key": "k"}}]).encode())]


async def check_one_line(resp, status: int, line: str) -> None:
    text = await resp.text()
    assert (resp.status, text) == (status, line + "\n")
    assert "Traceback" not in text and 'File "' not in text


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
@pytest.mark.parametrize(("exc", "line"), [
    (NoLeaderError("no leader elected within 5s"), "no leader: no leader elected within 5s"),
    (NotAppliedError("this node is stopping"), "not applied: this node is stopping"),
    (OutcomeUnknownError("not committed within 5s"), "outcome unknown: not committed within 5s"),
])
async def test_write_failures_are_503_with_retry_after(serve, method, path, body, exc, line):
    node = FakeNode()
    node.put("k", b"before")
    node.fail_propose = exc
    client = await serve(node)
    resp = await client.request(method, path, data=body)
    await check_one_line(resp, 503, line)
    assert resp.headers["Retry-After"] == "1"
    assert node.state.get("k").value == b"before"


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
@pytest.mark.parametrize(("exc", "status", "line"), [
    (DiskFullError("node n1: disk full (/data, 0 bytes free)"), 507, "node n1: disk full (/data, 0 bytes free)"),
    (ClusterDiskFullError("cannot commit: disk full on a majority (node n2, node n3)"), 503,
     "cannot commit: disk full on a majority (node n2, node n3)"),
])
async def test_a_full_disk_is_507_here_and_503_for_the_cluster(serve, method, path, body, exc, status, line):
    node = FakeNode()
    node.put("k", b"before")
    node.fail_propose = exc
    client = await serve(node)
    resp = await client.request(method, path, data=body)
    await check_one_line(resp, status, line)
    assert resp.headers["Retry-After"] == "1"
    assert node.state.get("k").value == b"before"


@pytest.mark.parametrize("query", ["", "?stale", "?consistent", "?recurse", "?index=1&wait=1s"])
async def test_not_ready_read_is_503_with_retry_after(serve, query):
    node = FakeNode()
    node.put("k", b"v")
    node.fail_read = NotReadyError("this node lost its local state and is catching up from its peers")
    client = await serve(node)
    resp = await client.get(f"/v1/kv/k{query}")
    await check_one_line(resp, 503, "this node lost its local state and is catching up from its peers")
    assert resp.headers["Retry-After"] == "1"


async def test_read_without_leader_is_503(serve):
    node = FakeNode()
    node.fail_read = NoLeaderError("no leader elected within 2s")
    client = await serve(node)
    resp = await client.get("/v1/kv/k")
    await check_one_line(resp, 503, "no leader: no leader elected within 2s")
    assert resp.headers["Retry-After"] == "1"


@pytest.mark.parametrize("exc", [RuntimeError("secret internals /home/x.py line 3"), RaftkvError("base"),
                                 KeyError("k")])
async def test_unexpected_errors_are_500_without_details(serve, exc):
    node = FakeNode()
    node.fail_propose = exc
    client = await serve(node)
    resp = await client.put("/v1/kv/k", data=b"v")
    await check_one_line(resp, 500, "internal error (see the node's log)")


async def test_membership_busy_is_409(serve):
    node = FakeNode(raft_address="127.0.0.1:7001")
    node.voters = ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]
    node.fail_config = MembershipBusyError("another membership change is in progress; retry once it is applied")
    client = await serve(node)
    resp = await client.delete("/v1/operator/raft/peer", params={"address": "127.0.0.1:7003"})
    await check_one_line(resp, 409, "another membership change is in progress; retry once it is applied")
    node.fail_config = None
    resp = await client.delete("/v1/operator/raft/peer", params={"address": "127.0.0.1:7003"})
    assert resp.status == 200 and node.voters == ["127.0.0.1:7001", "127.0.0.1:7002"]


async def test_unknown_route_is_aiohttps_404_not_a_500(serve):
    client = await serve(FakeNode())
    resp = await client.get("/v1/nope")
    assert resp.status == 404 and "Traceback" not in await resp.text()
