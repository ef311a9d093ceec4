"""SIGKILL every node right after a burst of acknowledged writes, restart, read them all back."""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.wait import wait_until


def burst(nodes, count: int, tag: str) -> set[str]:
    """Concurrent writes spread over all nodes; returns the keys whose write was acknowledged."""

    def write(i):
        node = nodes[i % len(nodes)]
        key = f"{tag}/{i:05d}"
        try:
            r = requests.put(f"{node.url}/v1/kv/{key}", data=f"value-{i}".encode(), timeout=10)
            return key if r.status_code == 200 and r.json() is True else None
        except requests.RequestException:
            return None

    with ThreadPoolExecutor(16) as pool:
        return {k for k in pool.map(write, range(count)) if k}


def snapshot(node, prefix: str) -> dict[str, tuple[bytes, int, int]]:
    r = requests.get(f"{node.url}/v1/kv/{prefix}", params={"recurse": ""}, timeout=10)
    assert r.status_code == 200
    return {e["Key"]: (base64.b64decode(e["Value"]), e["CreateIndex"], e["ModifyIndex"]) for e in r.json()}


ORDERS = {
    "together": [[0, 1, 2]],
    "reverse-one-by-one": [[2], [1], [0]],
    "two-then-one": [[1, 0], [2]],
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_kill_all_after_burst_then_restart_keeps_every_acknowledged_write(cluster, order):
    acked = burst(cluster.nodes, 600, "burst")
    assert len(acked) >= 590, "nearly every write should succeed on a healthy cluster"
    before = snapshot(cluster.leader(), "burst/")  # taken within milliseconds of the last ack
    terms = {n.node_id: n.status()["term"] for n in cluster.nodes}
    for node in cluster.nodes:
        node.kill()
    for group in ORDERS[order]:
        for i in group:
            cluster.nodes[i].start()
        for i in group:  # started, not just spawned: otherwise the order would not be the one tested
            wait_until(f"{cluster.nodes[i].node_id} to answer", cluster.nodes[i].status, timeout=30)
        time.sleep(0.5)  # not synchronisation: the partial cluster runs alone for a moment before the next group
    leader = cluster.leader(timeout=30)
    after = snapshot(leader, "burst/")
    missing = acked - after.keys()
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {sorted(missing)[:3]}"
    changed = {k for k in acked if after[k] != before[k]}
    assert not changed, f"values or indexes changed across the restart: {sorted(changed)[:3]}"
    for node in cluster.nodes:
        st = cluster.wait_for(f"{node.node_id} status", node.status)
        assert st["term"] >= terms[node.node_id], "a term went backwards across a restart"
    # Every node converges to the same content.
    last = max(m for _, _, m in after.values())
    cluster.wait_applied(last)
    for node in cluster.nodes:
        r = requests.get(f"{node.url}/v1/kv/burst/", params={"recurse": "", "stale": ""}, timeout=10)
        assert {e["Key"]: e["ModifyIndex"] for e in r.json()} == {k: v[2] for k, v in after.items()}
