"""Consistency modes on a real cluster: stale reads without a leader, max_stale, follower-served
consistent reads, headers, transaction limits and idle watchers."""

from __future__ import annotations

import asyncio
import os
import time

import aiohttp
import pytest
import requests

from tests.support.cluster import Cluster
from tests.support.wait import wait_until_async

META_HEADERS = ("X-Consul-Index", "X-Consul-KnownLeader", "X-Consul-LastContact", "X-Consul-Effective-Consistency")


def test_every_kv_read_carries_the_meta_headers_404s_included(shared_cluster):
    node = shared_cluster.followers()[0]
    requests.put(f"{node.url}/v1/kv/h", data=b"x", timeout=10)
    for params in ({}, {"consistent": ""}, {"stale": ""}, {"recurse": ""}, {"keys": ""}):
        for key in ("h", "absent"):
            r = requests.get(f"{node.url}/v1/kv/{key}", params=params, timeout=10)
            assert r.status_code in (200, 404)
            assert all(h in r.headers for h in META_HEADERS), (params, key, r.headers)
            assert int(r.headers["X-Consul-Index"]) >= 1
    mode = lambda p: requests.get(f"{node.url}/v1/kv/h", params=p, timeout=10).headers[META_HEADERS[3]]  # noqa: E731
    assert (mode({}), mode({"consistent": ""}), mode({"stale": ""})) == ("leader", "consistent", "stale")


def test_consistent_reads_on_a_follower_are_served_by_the_follower(shared_cluster):
    follower = shared_cluster.followers()[0]
    assert requests.put(f"{shared_cluster.leader().url}/v1/kv/c", data=b"1", timeout=10).json() is True
    before = follower.status()
    for _ in range(20):
        r = requests.get(f"{follower.url}/v1/kv/c", params={"consistent": ""}, timeout=10)
        assert r.status_code == 200 and r.json()[0]["Value"] == "MQ=="
    after = follower.status()
    assert after["forwarded"]["ok"] == before["forwarded"]["ok"], "consistent reads must not be forwarded"
    assert after["reads"]["linearizable"] - before["reads"]["linearizable"] == 20
    # ReadIndex: the follower asked the leader, nobody proposed a log entry for them.
    assert after["proposals"]["entries"] == before["proposals"]["entries"]


def test_a_followers_consistent_read_sees_every_write_acknowledged_before_it_without_a_round(shared_cluster):
    """With 3 voters the follower's ask is the leader's confirmation (node/engine/read_index.py,
    `_ask_confirms`): each read must still see the write the leader acknowledged just before."""
    leader, follower = shared_cluster.leader(), shared_cluster.followers()[0]
    before = leader.status()["reads"]
    for i in range(30):
        assert requests.put(f"{leader.url}/v1/kv/fresh", data=str(i).encode(), timeout=10).json() is True
        r = requests.get(f"{follower.url}/v1/kv/fresh", params={"consistent": "", "raw": ""}, timeout=10)
        assert (r.status_code, r.content) == (200, str(i).encode())
    after = leader.status()["reads"]
    assert after["asks_at_once"] - before["asks_at_once"] >= 30
    assert after["led_rounds"] == before["led_rounds"], "no confirmation round for an ask"


def test_stale_reads_answer_without_a_leader_and_max_stale_bounds_them(cluster):
    leader = cluster.leader()
    r = requests.put(f"{leader.url}/v1/kv/s", data=b"kept", timeout=10)
    assert r.json() is True
    cluster.wait_applied(int(requests.get(f"{leader.url}/v1/kv/s", timeout=10).headers["X-Consul-Index"]))
    survivor = next(n for n in cluster.nodes if n is not leader)
    for n in cluster.nodes:
        if n is not survivor:
            n.kill()
    # A follower that hears no leader for an election timeout stops naming one.
    cluster.wait_for("the survivor to know it has no leader", lambda: (s := survivor.status()) and s["leader"] is None)
    r = requests.get(f"{survivor.url}/v1/kv/s", params={"stale": ""}, timeout=10)
    assert r.status_code == 200 and r.json()[0]["Value"] == "a2VwdA=="
    assert int(r.headers["X-Consul-LastContact"]) >= 900
    assert requests.get(f"{survivor.url}/v1/kv/s", params={"stale": "", "max_stale": "1h"}, timeout=10).ok
    started = time.monotonic()
    r = requests.get(f"{survivor.url}/v1/kv/s", params={"stale": "", "max_stale": "500ms"}, timeout=20)
    assert r.status_code == 503 and r.headers.get("Retry-After"), r.text
    print(f"\nmax_stale=500ms refused after {time.monotonic() - started:.2f}s")
    r = requests.get(f"{survivor.url}/v1/kv/s", timeout=20)  # default mode needs the leader too
    assert r.status_code == 503
    assert requests.get(f"{survivor.url}/v1/kv/s", params={"stale": ""}, timeout=10).headers[
        "X-Consul-KnownLeader"] == "false"


def test_max_stale_is_served_locally_when_the_leader_was_heard_recently(shared_cluster):
    follower = shared_cluster.followers()[0]
    requests.put(f"{follower.url}/v1/kv/m", data=b"v", timeout=10)
    before = follower.status()["forwarded"]["ok"]
    r = requests.get(f"{follower.url}/v1/kv/m", params={"max_stale": "10s"}, timeout=10)
    assert r.status_code in (200, 404) and r.headers["X-Consul-Effective-Consistency"] == "stale"
    assert follower.status()["forwarded"]["ok"] == before
    bad = requests.get(f"{follower.url}/v1/kv/m", params={"max_stale": "soon"}, timeout=10)
    assert bad.status_code == 400 and "max_stale" in bad.text
    bad = requests.get(f"{follower.url}/v1/kv/m", params={"max_stale": "1s", "consistent": ""}, timeout=10)
    assert bad.status_code == 400 and "conflicting" in bad.text
    bad = requests.get(f"{follower.url}/v1/kv/m", params={"index": "1", "wait": "forever"}, timeout=10)
    assert bad.status_code == 400 and "wait" in bad.text


def test_txn_limits_and_malformed_bodies(shared_cluster):
    url = f"{shared_cluster.nodes[0].url}/v1/txn"
    too_many = [{"KV": {"Verb": "get", "Key": f"k{i}"}} for i in range(129)]
    r = requests.put(url, json=too_many, timeout=10)
    assert r.status_code == 413 and "too many operations" in r.text
    big = "A" * (700 * 1024)  # base64 of more than 512 KiB
    r = requests.put(url, json=[{"KV": {"Verb": "set", "Key": "k", "Value": big}}], timeout=10)
    assert r.status_code == 413
    for body, reason in ((b"{nope", "Failed to parse body"), (b'[{"KV": {"Verb": "nope", "Key": "k"}}]', "verb"),
                         (b'[{"Node": {}}]', "only KV"), (b'[{"KV": {"Verb": "set", "Key": "k", "Value": "%%"}}]',
                                                          "base64")):
        r = requests.put(url, data=body, timeout=10)
        assert r.status_code == 400 and reason in r.text, (body, r.text)
    assert requests.get(f"{shared_cluster.nodes[0].url}/v1/kv/k", timeout=10).status_code == 404


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def watched_node(tmp_path):
    """One node that lets one client hold 10,000 connections and blocking queries (api/limits.py:
    200 and 64 per client address by default), and gives each connection a minute to send its
    request head: a client opening 10,000 at once on a busy machine took more than the default 10 s
    for a few of them, and the node rightly cut those off (408)."""
    c = Cluster(str(tmp_path / "w"), size=1, extra_args=["--max-conns-per-client", "20000",
                                                         "--max-blocking-per-client", "20000",
                                                         "--http-head-timeout", "60"]).start()
    try:
        yield c.leader()
    finally:
        c.stop()


# Watchers are opened this many at a time, each wave registered (with its own deadline) before
# the next: on a loaded machine 10,000 took over a minute to register, past a single deadline
# and the watchers' own wait, and 10,000 connects at once also exceed the node's listen backlog.
WAVE = 500


@pytest.mark.alone  # 10,000 connections from one client: with another test beside it, registering them timed out
def test_ten_thousand_idle_watchers_cost_no_cpu_and_one_change_wakes_one(watched_node):
    node = watched_node
    base = f"{node.url}/v1/kv/w"
    requests.put(f"{base}/hot", data=b"0", timeout=10)
    index = requests.get(f"{base}/hot", timeout=10).headers["X-Consul-Index"]
    count = 10_000

    async def scenario():
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=600)) as s:
            async def watch(i):
                key = "hot" if i == 0 else f"idle{i}"
                async with s.get(f"{base}/{key}", params={"index": index, "wait": "5m", "stale": ""}) as r:
                    await r.read()
                    return i

            tasks: list[asyncio.Task] = []
            for start in range(0, count, WAVE):
                opened = min(start + WAVE, count)
                tasks += [asyncio.create_task(watch(i)) for i in range(start, opened)]
                await wait_until_async(f"watchers {start}-{opened - 1} to register",
                                       lambda: asyncio.to_thread(node.status, 5), timeout=60, interval=0.05,
                                       until=lambda st, opened=opened: st["watchers"] >= opened)
            pid = node.proc.pid
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            await asyncio.sleep(3)  # not synchronisation: the idle spell whose CPU time is measured
            idle_cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
            await asyncio.to_thread(requests.put, f"{base}/hot", data=b"1", timeout=10)
            done, _ = await asyncio.wait(tasks, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            await asyncio.sleep(0.5)  # not synchronisation: time for any wrongly woken watcher to show up
            woken = [t for t in tasks if t.done()]
            still = node.status(timeout=5)["watchers"]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return idle_cpu, [t.result() for t in woken], still

    idle_cpu, woken, still = asyncio.run(scenario())
    # A benchmark figure, not an assertion (DESIGN.md, testing rules): what this machine measured.
    print(f"\n{count} idle watchers: node CPU {idle_cpu * 100:.1f}% of a core over 3 s (Raft heartbeats included)")
    assert woken == [0] and still == count - 1


def test_ten_thousand_linearizable_reads_write_nothing_to_the_journal(cluster):
    """ReadIndex reads: no log entry, no journal byte, whichever node they reach and whichever
    linearizable mode they ask for (the leader confirms with a heartbeat-like round instead)."""
    leader = cluster.leader()
    assert requests.put(f"{leader.url}/v1/kv/j", data=b"v", timeout=10).json() is True
    cluster.wait_applied(int(requests.get(f"{leader.url}/v1/kv/j", timeout=10).headers["X-Consul-Index"]))
    journals = [os.path.join(n.data_dir, "raft.journal") for n in cluster.nodes]

    def state():
        statuses = [n.status() for n in cluster.nodes]
        return ([os.path.getsize(p) for p in journals], [s["commit_index"] for s in statuses],
                [s["term"] for s in statuses])

    def settled():  # start-up entries (the cluster's own) committed everywhere, nothing in flight
        first = state()
        time.sleep(1)
        return first if state() == first and len(set(first[1])) == 1 else None

    before = cluster.wait_for("the log to settle", settled, timeout=60)
    rounds_before = {n.node_id: n.status()["reads"]["rounds"] for n in cluster.nodes}

    async def read_many(total: int, clients: int) -> int:
        urls = [f"{n.url}/v1/kv/j" for n in cluster.nodes]
        modes = [{"consistent": ""}, {}]
        ok = 0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
            async def client(c: int) -> None:
                nonlocal ok
                for i in range(c, total, clients):
                    async with s.get(urls[i % 3], params=modes[(i // 3) % 2]) as r:
                        assert r.status == 200, await r.text()
                        ok += 1
            await asyncio.gather(*(client(c) for c in range(clients)))
        return ok

    started = time.monotonic()
    assert asyncio.run(read_many(10_000, 16)) == 10_000
    elapsed = time.monotonic() - started
    after = state()
    rounds = {n.node_id: n.status()["reads"]["rounds"] - rounds_before[n.node_id] for n in cluster.nodes}
    print(f"\n10,000 reads in {elapsed:.1f} s; journal bytes before {before[0]}, after {after[0]}; "
          f"commit index before {before[1]}, after {after[1]}; terms {before[2]}, {after[2]}; rounds per node {rounds}")
    assert after == before, "linearizable reads must not write to the log"
    assert sum(rounds.values()) > 0
