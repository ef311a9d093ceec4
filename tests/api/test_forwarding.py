"""Who answers: a follower fake forwards what the leader must answer to a leader fake served on
127.0.0.1; writes are proposed on the node that received them (no HTTP hop)."""

import asyncio
import base64
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestClient

from api.context import ApiConfig
from api.forward import FORWARDED_HEADER
from node.codec import SetOp
from snapshots import format as fmt
from tests.api.fake_node import FakeNode
from tests.support.wait import wait_until_async


@dataclass
class Pair:
    leader: FakeNode
    follower: FakeNode
    client: TestClient  # talks to the follower
    seen: list  # requests the leader's app received


@pytest.fixture
async def pair(serve, tmp_path):
    leader = FakeNode("leader", "127.0.0.1:7001", snapshot_dir=str(tmp_path))
    leader.put("k", b"from-leader")
    leader.put("k", b"from-leader")  # the leader is ahead: index 2
    seen: list = []
    leader_client = await serve(leader, seen=seen)
    follower = FakeNode("follower", "127.0.0.1:7002", leader=False)
    follower.put("k", b"from-follower")
    follower.follow(leader.raft_address, f"127.0.0.1:{leader_client.server.port}", contact_ms=1500)
    return Pair(leader, follower, await serve(follower), seen)


async def value_of(resp) -> bytes:
    assert resp.status == 200, await resp.text()
    [entry] = await resp.json()
    return base64.b64decode(entry["Value"])


async def test_default_read_on_a_follower_is_answered_by_the_leader(pair):
    resp = await pair.client.get("/v1/kv/k")
    assert await value_of(resp) == b"from-leader"
    assert resp.headers["X-Consul-Index"] == "2"
    assert resp.headers["X-Consul-LastContact"] == "0"  # the leader's headers come back
    [(method, path, headers)] = pair.seen
    assert (method, path, headers[FORWARDED_HEADER]) == ("GET", "/v1/kv/k", "follower")


async def test_default_read_of_a_missing_key_relays_the_leaders_404(pair):
    resp = await pair.client.get("/v1/kv/absent")
    assert resp.status == 404 and await resp.read() == b""
    assert resp.headers["X-Consul-Index"] == "2" and len(pair.seen) == 1


async def test_consistent_and_stale_reads_are_answered_by_the_follower(pair):
    for query in ("stale", "consistent"):
        resp = await pair.client.get(f"/v1/kv/k?{query}")
        assert await value_of(resp) == b"from-follower"
        assert resp.headers["X-Consul-LastContact"] == "1500"
    assert pair.seen == []


@pytest.mark.parametrize(("max_stale", "answer", "hops"), [
    ("2s", b"from-follower", 0), ("1500ms", b"from-follower", 0), ("1s", b"from-leader", 1),
    ("1m", b"from-follower", 0),
])
async def test_max_stale_is_local_within_the_last_contact_else_forwarded(pair, max_stale, answer, hops):
    resp = await pair.client.get("/v1/kv/k", params={"stale": "", "max_stale": max_stale})
    assert await value_of(resp) == answer
    assert len(pair.seen) == hops


async def test_max_stale_without_any_contact_is_forwarded(pair):
    pair.follower.contact_ms = None
    resp = await pair.client.get("/v1/kv/k", params={"max_stale": "1h"})
    assert await value_of(resp) == b"from-leader"


async def test_writes_on_a_follower_are_proposed_there_not_forwarded(pair):
    assert await (await pair.client.put("/v1/kv/w", data=b"x")).json() is True
    assert await (await pair.client.delete("/v1/kv/w")).json() is True
    assert pair.follower.proposed[0] == SetOp("w", b"x", 0, None) and len(pair.follower.proposed) == 2
    assert pair.leader.proposed == [] and pair.seen == []


async def test_an_already_forwarded_request_on_a_follower_is_503(pair):
    resp = await pair.client.get("/v1/kv/k", headers={FORWARDED_HEADER: "n9"})
    text = await resp.text()
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert text == "not the leader (this request was already forwarded by n9)\n"
    assert pair.seen == []


async def test_an_already_forwarded_request_on_the_leader_is_served(serve):
    node = FakeNode()
    node.put("k", b"v")
    client = await serve(node)
    resp = await client.get("/v1/kv/k", headers={FORWARDED_HEADER: "n9"})
    assert await value_of(resp) == b"v"


async def test_no_known_leader_is_503_after_the_request_timeout(serve):
    follower = FakeNode("follower", "127.0.0.1:7002", leader=False)
    client = await serve(follower, ApiConfig(request_timeout_s=0.2))
    resp = await client.get("/v1/kv/k")
    assert resp.status == 503 and (await resp.text()).startswith("no leader: ")
    resp = await client.get("/v1/kv/k?stale")  # a stale read needs no leader
    assert resp.status == 404


async def test_a_read_waits_for_the_leader_to_publish_its_http_address(pair):
    address = pair.follower.leader_http()
    pair.follower.follow(pair.leader.raft_address, None)
    task = asyncio.create_task(pair.client.get("/v1/kv/k"))
    await wait_until_async("the read to reach the forwarder", lambda: pair.follower.reads, timeout=5, interval=0.005)
    assert not task.done()
    pair.follower.follow(pair.leader.raft_address, address)  # fires the cluster-change pulse
    assert await value_of(await asyncio.wait_for(task, 5)) == b"from-leader"


async def test_leader_that_never_publishes_its_http_address_is_503(serve):
    follower = FakeNode("follower", "127.0.0.1:7002", leader=False)
    follower.follow("127.0.0.1:7001", None)
    client = await serve(follower, ApiConfig(request_timeout_s=0.2))
    resp = await client.get("/v1/kv/k")
    assert resp.status == 503
    assert await resp.text() == "the leader has not published its HTTP address yet\n"


async def test_unreachable_leader_is_503(pair):
    pair.follower.follow(pair.leader.raft_address, "127.0.0.1:1")
    resp = await pair.client.get("/v1/kv/k")
    assert resp.status == 503 and "unreachable" in await resp.text()


async def test_operator_configuration_is_forwarded_unless_stale(pair):
    pair.leader.voters = ["127.0.0.1:7001", "127.0.0.1:7002"]
    doc = await (await pair.client.get("/v1/operator/raft/configuration")).json()
    assert [(s["Address"], s["Leader"]) for s in doc["Servers"]] == [("127.0.0.1:7001", True),
                                                                    ("127.0.0.1:7002", False)]
    doc = await (await pair.client.get("/v1/operator/raft/configuration?stale")).json()
    assert [s["Address"] for s in doc["Servers"]] == ["127.0.0.1:7002"]
    assert [path for _, path, _ in pair.seen] == ["/v1/operator/raft/configuration"]


async def test_snapshot_download_on_a_follower_comes_from_the_leader(pair, tmp_path):
    resp = await pair.client.get("/v1/snapshot")
    assert resp.status == 200, await resp.text()
    path = tmp_path / "downloaded.rkvs"
    path.write_bytes(await resp.read())
    header, _, entries = fmt.read(str(path))
    assert header.index == 2 and [(e[0], e[1]) for e in entries] == [("k", b"from-leader")]
    assert resp.headers["X-Consul-Index"] == "2"
    assert [path for _, path, _ in pair.seen] == ["/v1/snapshot"]


async def test_a_forwarded_blocking_read_moves_to_a_new_leader(pair, serve):
    new_leader = FakeNode("new-leader", "127.0.0.1:7003")
    for value in (b"1", b"2", b"from-new-leader"):
        new_leader.put("k", value)  # index 3
    new_client = await serve(new_leader)
    task = asyncio.create_task(pair.client.get("/v1/kv/k", params={"index": "2", "wait": "30s"}))
    await wait_until_async("the old leader to hold the query", lambda: pair.leader.hub.waiting, timeout=5,
                           interval=0.005)
    pair.follower.follow(new_leader.raft_address, f"127.0.0.1:{new_client.server.port}")
    resp = await asyncio.wait_for(task, 5)
    assert await value_of(resp) == b"from-new-leader" and resp.headers["X-Consul-Index"] == "3"
    await wait_until_async("the old leader to drop the query", lambda: pair.leader.hub.waiting == 0, timeout=5,
                           interval=0.005)
