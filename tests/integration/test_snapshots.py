"""Snapshots as checkpoints on real clusters: crashes while writing, damaged files, catch-up
through a snapshot, save/wipe/restore, and a journal that stays bounded."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.cluster import Cluster

SMALL_SNAPSHOTS = ["--snapshot-entries", "60", "--snapshot-interval", "5"]


def read_text(path) -> str:
    return pathlib.Path(path).read_text()


_started: list[Cluster] = []


@pytest.fixture(autouse=True)
def _stop_clusters_afterwards():
    """A failed assertion skips a test's own `stop()`: its nodes must not outlive it."""
    yield
    while _started:
        _started.pop().stop()


def start(tmp_path, name="c", args=SMALL_SNAPSHOTS) -> Cluster:
    cluster = Cluster(str(tmp_path / name), extra_args=args)
    _started.append(cluster)
    cluster.start().leader()
    return cluster


def write_many(nodes, keys, tag="k", value=b"v"):
    def put(i):
        node = nodes[i % len(nodes)]
        try:
            r = requests.put(f"{node.url}/v1/kv/{tag}/{i:06d}", data=value + b"%d" % i, timeout=10)
            return i if r.status_code == 200 and r.json() is True else None
        except requests.RequestException:
            return None

    with ThreadPoolExecutor(16) as pool:
        return {i for i in pool.map(put, keys) if i is not None}


TXN_OPS = 128  # the most a transaction may hold (api/txn.py)


def write_in_bulk(nodes, keys, tag="k", value=b"v"):
    """Set the keys as `write_many` does, 128 to a transaction (one Raft entry) through /v1/txn:
    for the tests about how much the log and the store hold, not about single writes. A
    transaction refused or of unknown outcome (a leader change under load) is sent again, up to
    3 times: setting the same values twice changes nothing, and one lost transaction is 128 keys."""
    keys = list(keys)

    def put(start):
        batch = keys[start:start + TXN_OPS]
        ops = [{"KV": {"Verb": "set", "Key": f"{tag}/{i:06d}", "Value": base64.b64encode(value + b"%d" % i).decode()}}
               for i in batch]
        for attempt in range(3):
            node = nodes[(start // TXN_OPS + attempt) % len(nodes)]
            try:
                r = requests.put(f"{node.url}/v1/txn", json=ops, timeout=30)
                if r.status_code == 200 and r.json()["Errors"] is None:
                    return batch
            except requests.RequestException:
                pass
        return []

    with ThreadPoolExecutor(4) as pool:
        return {i for batch in pool.map(put, range(0, len(keys), TXN_OPS)) for i in batch}


def content(node, stale=False) -> dict:
    r = requests.get(f"{node.url}/v1/kv/", params={"recurse": "", **({"stale": ""} if stale else {})}, timeout=30)
    if r.status_code == 404:
        return {}
    return {e["Key"]: (e["Value"], e["Flags"], e["CreateIndex"], e["ModifyIndex"]) for e in r.json()}


def digest(entries: dict) -> str:
    return hashlib.sha256(json.dumps(sorted(entries.items())).encode()).hexdigest()


def test_sigkill_while_snapshots_are_written_never_loses_an_acknowledged_write(tmp_path):
    cluster = start(tmp_path, args=["--snapshot-entries", "15"])
    acked: set[int] = set()
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set() and i < 100_000:
            batch = range(i, i + 64)
            acked.update(write_many(cluster.nodes, batch, "crash"))
            i += 64

    thread = threading.Thread(target=writer)
    thread.start()
    rng = random.Random(7)
    try:
        for round_ in range(20):
            time.sleep(rng.uniform(0.05, 0.6))  # not synchronisation: the writer runs a random while between kills
            victims = cluster.nodes if round_ % 4 == 2 else [rng.choice(cluster.nodes)]
            for node in victims:
                node.kill()  # its snapshot writer thread dies with it, mid-file or not
            for node in victims:
                node.start()
            cluster.leader(timeout=30)
    finally:
        stop.set()
        thread.join()
    leader = cluster.leader(timeout=30)
    keys = {int(k.rsplit("/", 1)[1]) for k in content(leader) if k.startswith("crash/")}
    missing = acked - keys
    assert len(acked) > 500 and not missing, f"{len(missing)} acknowledged writes lost, e.g. {sorted(missing)[:5]}"
    interrupted = sum(read_text(n.log_path).count("a crash interrupted a snapshot") for n in cluster.nodes)
    print(f"{len(acked)} acknowledged writes survived 20 kill rounds; {interrupted} restarts found a "
          "half-written snapshot")
    for n in cluster.nodes:
        assert not [f for f in os.listdir(n.data_dir) if f.endswith(".broken")], "no crash may damage a snapshot"
    cluster.stop()


def damage_newest_snapshot(node, how: str) -> str:
    snaps = sorted(os.listdir(os.path.join(node.data_dir, "snapshots")))
    path = os.path.join(node.data_dir, "snapshots", [s for s in snaps if s.endswith(".rkvs")][-1])
    data = bytearray(pathlib.Path(path).read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) - 100]
    # raft.dump is a link to the same file: rewrite in place so both see the damage
    with open(path, "r+b") as f:
        f.write(bytes(data))
        f.truncate(len(data))
    return path


def test_damaged_snapshots_are_reported_quarantined_and_replaced(tmp_path):
    cluster = start(tmp_path)
    acked = write_many(cluster.nodes, range(600), "dmg")
    leader = cluster.leader()
    victim = next(n for n in cluster.nodes if n is not leader)
    expected = content(leader)
    for how in ("flip", "truncate"):
        cluster.wait_for("a few snapshots on the victim", lambda: len(os.listdir(
            os.path.join(victim.data_dir, "snapshots"))) >= 2)
        victim.stop()
        damage_newest_snapshot(victim, how)
        victim.start()
        cluster.wait_for("victim back", lambda: victim.status())
        log = read_text(victim.log_path)
        assert "is unusable" in log and ("checksum mismatch" in log or "truncated" in log)
        assert [f for f in os.listdir(os.path.join(victim.data_dir, "snapshots")) if f.endswith(".broken")]
        cluster.wait_applied(leader.status()["applied_index"], [victim])
        assert content(victim, stale=True) == expected
        write_many(cluster.nodes, range(600, 900), f"more-{how}")
        expected = content(leader)
    assert len(acked) == 600
    cluster.stop()


def test_node_with_no_usable_snapshot_recovers_from_peers_and_never_serves_an_empty_store(tmp_path):
    cluster = start(tmp_path)
    write_many(cluster.nodes, range(400), "rec")
    leader = cluster.leader()
    victim = next(n for n in cluster.nodes if n is not leader)
    cluster.wait_for("victim compacted its log", lambda: (s := victim.status()) and s["snapshots"]["taken"] >= 2)
    victim.stop()
    for name in os.listdir(os.path.join(victim.data_dir, "snapshots")):
        os.truncate(os.path.join(victim.data_dir, "snapshots", name), 10)
    leader.signal(19)  # SIGSTOP: no leader for the victim to catch up from, for now
    try:
        victim.start()
        cluster.wait_for("victim up", lambda: victim.status())
        r = requests.get(f"{victim.url}/v1/kv/rec/000001", params={"stale": ""}, timeout=10)
        assert r.status_code == 503 and "catching up" in r.text, "an empty store must not be served as data"
        assert "recovering the state from the peers" in read_text(victim.log_path)
    finally:
        leader.signal(18)  # SIGCONT
    cluster.wait_for("victim caught up", lambda: requests.get(
        f"{victim.url}/v1/kv/rec/000001", params={"stale": ""}, timeout=10).status_code == 200, timeout=30)
    assert len(content(victim, stale=True)) == 400
    cluster.stop()


def test_follower_down_during_ten_thousand_writes_catches_up_through_a_snapshot(tmp_path):
    # 83 transactions of 128 writes: 20 entries per snapshot leaves the follower's position compacted away
    cluster = start(tmp_path, args=["--snapshot-entries", "20"])
    leader = cluster.leader()
    follower = next(n for n in cluster.nodes if n is not leader)
    follower.kill()
    live = [n for n in cluster.nodes if n is not follower]
    acked = write_in_bulk(live, range(10_500), "far")
    assert len(acked) >= 10_400
    leader_status = leader.status()
    assert leader_status["snapshots"]["taken"] >= 1
    follower.start()
    cluster.wait_applied(leader_status["applied_index"], [follower], timeout=60)
    st = follower.status()
    assert st["snapshots"]["loaded_index"] is not None, "the follower should have installed the leader's snapshot"
    assert content(follower, stale=True) == content(leader)
    cluster.stop()


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True, text=True, timeout=120)


def test_save_wipe_restore_gives_identical_content_and_indexes(tmp_path):
    first = start(tmp_path, "first")
    write_many(first.nodes, range(1500), "data", b"value-")
    requests.delete(f"{first.nodes[0].url}/v1/kv/data/000007", timeout=10)
    before = content(first.leader())
    saved = tmp_path / "backup.rkvs"
    r = run_cli("snapshot", "save", str(saved), "--addr", first.nodes[1].http)
    assert r.returncode == 0, r.stderr
    inspect = json.loads(run_cli("snapshot", "inspect", str(saved), "--json").stdout)
    assert inspect["checksum"] == "OK" and inspect["keys"] == len(before)
    first.stop()

    second = start(tmp_path, "second")  # a wiped, brand-new cluster
    assert content(second.leader()) == {}
    r = run_cli("snapshot", "restore", str(saved), "--addr", second.nodes[2].http)
    assert r.returncode == 0, r.stderr
    leader = second.leader()
    cluster_after = content(leader)
    assert digest(cluster_after) == digest(before)
    second.wait_applied(leader.status()["applied_index"])
    for node in second.nodes:
        assert digest(content(node, stale=True)) == digest(before)
    requests.put(f"{leader.url}/v1/kv/after-restore", data=b"x", timeout=10)
    new_index = content(leader)["after-restore"][3]
    assert new_index > inspect["index"] and new_index > max(v[3] for v in before.values())
    second.stop()

    # Offline restore into empty data folders (disaster recovery), then start.
    third = Cluster(str(tmp_path / "third"))
    _started.append(third)
    for node in third.nodes:
        r = run_cli("snapshot", "restore", str(saved), "--data-dir", node.data_dir)
        assert r.returncode == 0, r.stderr
    third.start()
    assert digest(content(third.leader())) == digest(before)
    r = run_cli("snapshot", "restore", str(saved), "--data-dir", third.nodes[0].data_dir)
    assert r.returncode == 1 and "already holds" in r.stderr
    third.stop()


def test_journal_stays_bounded_under_a_long_write_load(tmp_path):
    # 4 transactions (entries) a round: a snapshot every 2 rounds; 20 rounds write 2 MB, which an
    # uncompacted journal would hold, well above the bound below
    cluster = start(tmp_path, args=["--snapshot-entries", "8"])
    sizes = []
    for round_ in range(20):
        written = write_in_bulk(cluster.nodes, range(round_ * 500, round_ * 500 + 500), "long", b"x" * 200)
        assert len(written) == 500
        sizes.append(max(os.path.getsize(os.path.join(n.data_dir, "raft.journal")) for n in cluster.nodes))
    print(f"journal sizes (bytes) after each 500 writes: {sizes}")
    assert max(sizes[3:]) < 3 * max(sizes[:3]) + 200_000, "the journal keeps growing: compaction is not working"
    cluster.stop()
