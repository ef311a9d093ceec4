"""A node that lost its data never costs an acknowledged write (issue: replaced disks).

The scenario, as found from outside: pause one follower so it falls behind, write 100 keys
(acknowledged by the leader and the other follower), SIGKILL both of those, damage the data
of the follower that had the writes, restart it, resume the lagging node. Before the fix the
damaged node voted as the member it was, the lagging node became leader, and the writes were
gone. Now the damaged node must not vote until it holds what it acknowledged, and every write
is there once the old leader is back.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal

import requests

from tests.support.cluster import Cluster


def write_keys(node, count: int) -> set[str]:
    acked = set()
    for i in range(count):
        r = requests.put(f"{node.url}/v1/kv/disk/{i:03d}", data=f"v{i}".encode(), timeout=10)
        assert r.status_code == 200 and r.json() is True, r.text
        acked.add(f"disk/{i:03d}")
    return acked


def keys_on(node, stale: bool = False) -> dict[str, bytes]:
    params = {"recurse": ""}
    if stale:
        params["stale"] = ""
    r = requests.get(f"{node.url}/v1/kv/disk/", params=params, timeout=10)
    if r.status_code == 404:
        return {}
    assert r.status_code == 200, r.text
    return {e["Key"]: base64.b64decode(e["Value"] or "") for e in r.json()}


def lose_writes_on(cluster: Cluster):
    """Pause a follower, write 100 keys, kill the leader and the other follower.
    Returns (leader, lagging, holder, acknowledged keys)."""
    leader = cluster.leader()
    lagging, holder = [n for n in cluster.nodes if n is not leader]
    lagging.signal(signal.SIGSTOP)
    acked = write_keys(leader, 100)
    leader.kill()
    holder.kill()
    return leader, lagging, holder, acked


def assert_every_write_everywhere(cluster: Cluster, acked: set[str]) -> None:
    leader = cluster.leader(timeout=30)
    on_leader = keys_on(leader)
    assert acked <= on_leader.keys(), f"{len(acked - on_leader.keys())} acknowledged writes lost"
    index = leader.status()["commit_index"]
    cluster.wait_applied(index, timeout=30)
    copies = {n.node_id: keys_on(n, stale=True) for n in cluster.nodes if n.alive()}
    assert all(c == on_leader for c in copies.values()), "replicas disagree"


def test_wiped_node_refuses_to_vote_as_the_member_it_was_then_rejoins(tmp_path):
    cluster = Cluster(str(tmp_path)).start()
    try:
        leader, lagging, holder, acked = lose_writes_on(cluster)
        shutil.rmtree(holder.data_dir)  # the disk was replaced
        holder.start()
        lagging.signal(signal.SIGCONT)
        assert holder.proc.wait(30) == 1, "a wiped member must refuse to start without --join"
        with open(holder.log_path) as f:
            refusal = f.read().strip().splitlines()[-1]
        assert "members remove" in refusal and "--join" in refusal, refusal
        # Nothing was lost: the lagging node alone cannot elect itself; the old leader brings the writes back.
        assert lagging.status()["state"] != "leader"
        leader.start()
        assert_every_write_everywhere(cluster, acked)

        # The procedure the refusal names: remove the member, join again with an empty folder.
        current = cluster.leader()
        r = requests.delete(f"{current.url}/v1/operator/raft/peer", params={"id": holder.node_id}, timeout=10)
        assert r.status_code == 200, r.text
        shutil.rmtree(holder.data_dir, ignore_errors=True)
        holder.extra_args = [*holder.extra_args, "--join", current.http]
        holder.start()
        cluster.wait_for("the rejoined node to become a voter", lambda: voter(current, holder.raft), timeout=60)
        cluster.wait_applied(current.status()["commit_index"], timeout=30)
        assert keys_on(holder, stale=True) == keys_on(current)
    finally:
        cluster.stop()


def test_damaged_journal_keeps_the_node_from_voting_until_it_holds_its_writes_again(tmp_path):
    cluster = Cluster(str(tmp_path), extra_args=["--snapshot-entries", "100000"]).start()
    try:
        leader, lagging, holder, acked = lose_writes_on(cluster)
        journal = os.path.join(holder.data_dir, "raft.journal")
        with open(journal, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(size // 3)
            chunk = f.read(8)
            f.seek(size // 3)
            f.write(bytes(b ^ 0xFF for b in chunk))
        holder.start()
        lagging.signal(signal.SIGCONT)
        cluster.wait_for("the damaged node to report its quarantine",
                         lambda: (s := holder.status()) is not None and s["voting"] is False
                         and "quarantined" in s["standing"], timeout=20)
        with open(holder.log_path) as f:
            assert "damaged" in f.read()
        leader.start()
        assert_every_write_everywhere(cluster, acked)
        cluster.wait_for("the damaged node to vote again", lambda: (s := holder.status()) and s["voting"], timeout=30)
    finally:
        cluster.stop()


def voter(node, raft: str) -> bool:
    r = requests.get(f"{node.url}/v1/operator/raft/configuration", timeout=5)
    return r.status_code == 200 and any(s["Address"] == raft and s["Voter"] for s in r.json()["Servers"])
