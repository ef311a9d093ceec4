"""/livez, /readyz and Consul's autopilot health over a fake node (api/health.py)."""

from __future__ import annotations

import time

from api.context import ApiConfig
from node.membership import PeerHello
from tests.api.fake_node import FakeNode

PEER, GONE = "127.0.0.1:7002", "127.0.0.1:7003"


def hello(addr: str, applied: int, term: int, age_s: float = 0.0) -> PeerHello:
    return PeerHello(addr, "fake", [], [], [], True, applied, term, at=time.monotonic() - age_s)


async def test_livez_answers_and_readyz_needs_a_leader_unless_noleader(serve):
    node = FakeNode(leader=False)
    client = await serve(node, ApiConfig(request_timeout_s=1.0))
    r = await client.get("/livez")
    assert (r.status, await r.text()) == (200, "ok\n")
    r = await client.get("/readyz")
    assert (r.status, await r.text()) == (503, "[+]node ok\n[-]leader: no leader known\n[+]store ok\n[+]disk ok\n")
    r = await client.get("/readyz", params={"noleader": ""})
    assert (r.status, await r.text()) == (200, "[+]node ok\n[+]store ok\n[+]disk ok\n")
    node.follow("127.0.0.1:7009", "127.0.0.1:8509")
    r = await client.get("/readyz")
    assert r.status == 200 and await r.text() == "[+]node ok\n[+]leader ok\n[+]store ok\n[+]disk ok\n"


async def test_readyz_is_503_while_behind_or_replaying_and_sync_waits_with_a_timeout(serve):
    node = FakeNode()
    client = await serve(node, ApiConfig(request_timeout_s=1.0))
    real_status = node.status
    behind = {"commit_index": 9, "applied_index": 4}
    node.status = lambda: {**real_status(), **behind}  # type: ignore[method-assign]
    r = await client.get("/readyz")
    assert r.status == 503 and "[-]store: applied 4 of 9 committed" in await r.text()
    started = time.monotonic()
    r = await client.get("/readyz", params={"sync": "", "timeout": "200ms"})
    assert r.status == 503 and time.monotonic() - started >= 0.2  # waited its timeout, then told why
    behind.update(applied_index=9)
    assert (await client.get("/readyz", params={"sync": "", "timeout": "1s"})).status == 200
    behind.update(recovering=True)
    r = await client.get("/readyz")
    assert r.status == 503 and "[-]store: replaying its own log" in await r.text()
    r = await client.get("/readyz", params={"sync": "", "timeout": "soon"})
    assert r.status == 400 and "invalid timeout" in await r.text()


async def test_autopilot_health_is_200_when_every_voter_is_healthy_and_429_otherwise(serve):
    node = FakeNode()
    node.voters = [node.raft_address, PEER, GONE]
    client = await serve(node, ApiConfig(request_timeout_s=1.0))
    node.peer_hellos = {PEER: hello(PEER, 0, 0), GONE: hello(GONE, 0, 0)}
    r = await client.get("/v1/operator/autopilot/health")
    body = await r.json()
    assert r.status == 200 and body["Healthy"] is True and body["FailureTolerance"] == 1
    assert [(s["Address"], s["Leader"], s["Voter"], s["Healthy"]) for s in body["Servers"]] == [
        (node.raft_address, True, True, True), (PEER, False, True, True), (GONE, False, True, True)]
    node.peer_hellos[GONE] = hello(GONE, 0, 0, age_s=10)  # not heard for 10 s
    r = await client.get("/v1/operator/autopilot/health")
    body = await r.json()
    assert r.status == 429 and body["Healthy"] is False and body["FailureTolerance"] == 0
    assert {s["Address"]: s["Healthy"] for s in body["Servers"]} == {node.raft_address: True, PEER: True, GONE: False}
    del node.peer_hellos[PEER]  # never heard
    body = await (await client.get("/v1/operator/autopilot/health")).json()
    assert [s["SerfStatus"] for s in body["Servers"]] == ["alive", "failed", "alive"]


async def test_a_full_disk_is_an_alarm_in_autopilot_health_and_a_failed_readyz_check(serve):
    node = FakeNode()
    node.voters = [node.raft_address, PEER]
    client = await serve(node, ApiConfig(request_timeout_s=1.0))
    node.peer_hellos = {PEER: hello(PEER, 0, 0)}
    body = await (await client.get("/v1/operator/autopilot/health")).json()
    assert [s["Alarms"] for s in body["Servers"]] == [[], []]
    node.peer_hellos = {PEER: PeerHello(PEER, "fake", [], [], [], True, 0, 0, disk_full=True)}
    r = await client.get("/v1/operator/autopilot/health")
    body = await r.json()
    assert r.status == 429 and body["Healthy"] is False
    assert {s["Address"]: (s["Healthy"], s["Alarms"]) for s in body["Servers"]} == {
        node.raft_address: (True, []), PEER: (False, ["NOSPACE"])}
    node.disk_full = True
    body = await (await client.get("/v1/operator/autopilot/health")).json()
    assert body["Servers"][0]["Alarms"] == ["NOSPACE"] and body["Servers"][0]["Healthy"] is False
    r = await client.get("/readyz")
    assert r.status == 503 and "[-]disk: node n1: disk full\n" in await r.text()
