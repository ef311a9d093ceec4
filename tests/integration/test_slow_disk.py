"""A slow disk: every journal sync takes 20 ms more (the fault-injection knob
RAFTKV_TEST_SYNC_DELAY_MS, node.engine.journal). With the journal syncing beside PySyncObj's
tick thread (pipelined group commit), 32 writers keep the log flowing: each sync covers every
entry appended while the previous one ran. The figures are printed (writes/s, writes per
leader fsync), not asserted on time; the assertions are outcomes: the writes are acknowledged,
syncs are shared, and every acknowledged write survives a SIGKILL of every node."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from node.engine.journal import SYNC_DELAY_ENV
from tests.integration.test_restart import snapshot
from tests.support.cluster import Cluster
from tests.support.wait import wait_until

WRITERS = 32
WRITES = 1600  # bounded in count ...
DEADLINE_S = 60.0  # ... and in time
SYNC_DELAY_MS = 20


def metric(node, name: str) -> float:
    text = requests.get(f"{node.url}/metrics", timeout=5).text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    assert found, f"{name} missing from /metrics"
    return float(found.group(1))


def test_a_slow_disk_keeps_the_pipeline_flowing_and_loses_no_acknowledged_write(tmp_path, monkeypatch):
    monkeypatch.setenv(SYNC_DELAY_ENV, str(SYNC_DELAY_MS))  # the node processes inherit it
    cluster = Cluster(str(tmp_path)).start()
    try:
        leader = cluster.leader()
        fsyncs_before = metric(leader, "raftkv_journal_fsync_duration_seconds_count")
        stop_at = time.monotonic() + DEADLINE_S

        def write(i):
            if time.monotonic() > stop_at:
                return None
            node = cluster.nodes[i % len(cluster.nodes)]
            key = f"slow/{i:05d}"
            try:
                r = requests.put(f"{node.url}/v1/kv/{key}", data=f"value-{i}".encode(), timeout=10)
                return key if r.status_code == 200 and r.json() is True else None
            except requests.RequestException:
                return None

        started = time.monotonic()
        with ThreadPoolExecutor(WRITERS) as pool:
            acked = {k for k in pool.map(write, range(WRITES)) if k}
        elapsed = time.monotonic() - started
        fsyncs = metric(leader, "raftkv_journal_fsync_duration_seconds_count") - fsyncs_before
        rate = len(acked) / elapsed
        print(f"\nslow disk ({SYNC_DELAY_MS} ms per sync), {WRITERS} writers: {len(acked)} of {WRITES} writes "
              f"acknowledged in {elapsed:.1f} s = {rate:.0f} writes/s ({rate * SYNC_DELAY_MS / 1000:.1f} writes per "
              f"{SYNC_DELAY_MS} ms); leader fsyncs {fsyncs:.0f}, {len(acked) / max(fsyncs, 1):.1f} writes per fsync")
        assert len(acked) >= WRITES * 0.95, "nearly every write should be acknowledged on a healthy cluster"
        assert len(acked) >= 2 * fsyncs, "syncs are shared by the writes that arrive while one runs"
        before = snapshot(cluster.leader(), "slow/")
        for node in cluster.nodes:
            node.kill()
        for node in cluster.nodes:
            node.start()
        for node in cluster.nodes:
            wait_until(f"{node.node_id} to answer", node.status, timeout=30)
        after = snapshot(cluster.leader(timeout=30), "slow/")
        missing = acked - after.keys()
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {sorted(missing)[:3]}"
        changed = {k for k in acked if after[k] != before[k]}
        assert not changed, f"values or indexes changed across the restart: {sorted(changed)[:3]}"
    finally:
        cluster.stop()
