"""Metrics on a real cluster (issue 13): /metrics present and typed on every node, moving under
load, the dashboard's and alert rules' series all there, and the leader gauge following a
leader SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import Cluster

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
DASHBOARD = os.path.join(ROOT, "docker", "grafana", "raftkv-dashboard.json")
ALERTS = os.path.join(ROOT, "docker", "prometheus", "alerts.yml")
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
                 "and", "or", "unless", "inf", "nan"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # Small snapshot threshold: the load below takes snapshots, so their series move too.
    c = Cluster(str(tmp_path_factory.mktemp("metrics")), extra_args=["--snapshot-entries", "20"]).start()
    try:
        c.leader()
        yield c
    finally:
        c.stop()


def scrape(node) -> dict:
    """Sample name -> [(labels, value)], and each family's type under "#types"."""
    r = requests.get(f"{node.url}/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain; version=")
    out: dict = {"#types": {}}
    for family in text_string_to_metric_families(r.text):
        out["#types"][family.name] = family.type
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def one(samples: dict, name: str, **labels) -> float:
    found = [v for lbl, v in samples.get(name, []) if all(lbl.get(k) == w for k, w in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def total(samples: dict, name: str) -> float:
    return sum(v for _, v in samples.get(name, []))


def test_metrics_are_typed_and_move_under_load(cluster):
    leader = cluster.leader()
    follower = cluster.followers()[0]
    before = {n.node_id: scrape(n) for n in cluster.nodes}
    types = before[leader.node_id]["#types"]
    assert types["raftkv_raft_is_leader"] == "gauge" and types["raftkv_raft_leader_changes"] == "counter"
    assert types["raftkv_journal_fsync_duration_seconds"] == "histogram"
    assert types["etcd_disk_wal_fsync_duration_seconds"] == "histogram"
    assert types["process_cpu_seconds"] == "counter"  # the default collectors come along

    def write(i: int) -> None:
        node = cluster.nodes[i % 3]  # through followers too: their entries travel over Raft
        assert requests.put(f"{node.url}/v1/kv/load/{i}", data=b"x" * 100, timeout=10).json() is True

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(240)))
    for i in range(20):
        assert requests.get(f"{follower.url}/v1/kv/load/{i}", timeout=10).status_code == 200  # forwarded
        assert requests.get(f"{follower.url}/v1/kv/load/{i}?consistent", timeout=10).status_code == 200
    cluster.wait_for("a snapshot on the leader", lambda: total(scrape(leader), "raftkv_snapshots_total") >= 1)

    after = {n.node_id: scrape(n) for n in cluster.nodes}
    for node in cluster.nodes:
        b, a = before[node.node_id], after[node.node_id]
        for series in ("raftkv_raft_entries_appended_total", "raftkv_journal_written_bytes_total",
                       "raftkv_journal_fsync_duration_seconds_count", "etcd_disk_wal_fsync_duration_seconds_count",
                       "raftkv_raft_commit_index", "raftkv_http_requests_total"):
            assert total(a, series) > total(b, series), (node.node_id, series)
        assert one(a, "raftkv_raft_is_leader") == (1 if node is leader else 0)
        assert one(a, "etcd_server_has_leader") == 1
    la, fa = after[leader.node_id], after[follower.node_id]
    assert one(la, "raftkv_proposals_writes_per_entry_count") > 0
    assert one(la, "raftkv_snapshot_duration_seconds_count") >= 1
    assert total(la, "raftkv_proposals_writes_total") > total(before[leader.node_id], "raftkv_proposals_writes_total")
    assert {lbl["follower"] for lbl, _ in la["raftkv_raft_follower_match_index"]} == {
        n.raft for n in cluster.nodes if n is not leader}
    assert "raftkv_raft_follower_match_index" not in fa  # only the leader knows its followers' progress
    assert one(fa, "raftkv_raft_last_contact_seconds") < 5
    assert one(fa, "raftkv_forwarded_requests_total", result="ok") >= 20
    assert one(fa, "raftkv_read_barrier_rounds_total") >= 1 and one(fa, "raftkv_read_barrier_reads_total") >= 20
    # Requests by route template (the lean front answered these), never by key.
    assert one(fa, "raftkv_http_requests_total", route="/v1/kv/{key}", method="GET", status="200",
               consistency="consistent") == 20
    assert all("load/" not in lbl.get("route", "") for lbl, _ in fa["raftkv_http_requests_total"])
    cluster.wait_for("every node to see a healthy cluster", lambda: all(
        one(s := scrape(n), "raftkv_autopilot_healthy") == 1 and one(s, "consul_autopilot_failure_tolerance") == 1
        for n in cluster.nodes))
    text = requests.get(f"{follower.url}/v1/agent/metrics", params={"format": "prometheus"}, timeout=10).text
    assert "raftkv_raft_commit_index" in text


def promql_series(expr: str) -> set[str]:
    """The series names a PromQL expression reads: label matchers, ranges, `by (...)` lists and
    strings removed, then every identifier not called as a function and not a keyword."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = re.findall(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr)
    return {n for n in names if n.lower() not in _PROMQL_WORDS}


def test_promql_series_finds_the_series_and_nothing_else():
    expr = ('histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket{x=~"b|c"}[5m]))) > 0.5 '
            'and on(instance) b_total offset 5m / ignoring(le) c')
    assert promql_series(expr) == {"a_bucket", "b_total", "c"}


def files_series() -> dict[str, set[str]]:
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    with open(ALERTS) as f:
        rules = yaml.safe_load(f)
    used: dict[str, set[str]] = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            used.setdefault(f"dashboard: {panel['title']}", set()).update(promql_series(target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            used[f"dashboard variable {variable['name']}"] = set(
                re.findall(r"label_values\((\w+)", variable["query"]["query"]))
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert set(rule) >= {"alert", "expr", "labels", "annotations"}, rule
            used[f"alert {rule['alert']}"] = promql_series(rule["expr"])
    return used


def test_every_series_of_the_dashboard_and_the_alert_rules_exists(cluster):
    present = set()
    for node in cluster.nodes:  # the union: some series exist only on the leader (its followers' lag)
        present |= {name for name in scrape(node) if not name.startswith("#")}
    used = files_series()
    assert len(used) >= 20 and all(used.values()), used
    missing = {where: names - present for where, names in used.items()}
    for where, names in missing.items():
        assert not names, f"{where}: {sorted(names)} missing from every node's /metrics"
    assert {"RaftkvNoLeader", "RaftkvLeaderChurn", "RaftkvJournalFsyncSlow", "RaftkvFollowerLagging",
            "RaftkvSnapshotFailures", "RaftkvDiskFull"} <= {w.removeprefix("alert ") for w in used}


def test_leader_gauges_follow_a_leader_kill(cluster):
    old = cluster.leader()
    survivors = [n for n in cluster.nodes if n is not old]
    changes = {n.node_id: one(scrape(n), "raftkv_raft_leader_changes_total") for n in survivors}
    old.signal(signal.SIGKILL)
    old.proc.wait(10)

    def new_leader():
        leaders = [n for n in survivors if one(scrape(n), "raftkv_raft_is_leader") == 1]
        return leaders[0] if len(leaders) == 1 else None

    new = cluster.wait_for("another node's is-leader gauge to turn 1", new_leader, timeout=30)
    new_samples = scrape(new)
    assert one(new_samples, "etcd_server_is_leader") == one(new_samples, "consul_server_isLeader") == 1
    assert one(new_samples, "consul_raft_state_leader") >= 1
    for node in survivors:
        samples = cluster.wait_for(f"{node.node_id} to know the new leader", lambda n=node: (
            s if one(s := scrape(n), "raftkv_raft_has_leader") == 1 else None))
        assert one(samples, "raftkv_raft_leader_changes_total") > changes[node.node_id]
        assert one(samples, "raftkv_raft_is_leader") == (1 if node is new else 0)
    assert one(new_samples, "raftkv_raft_elections_total") >= 1
    cluster.wait_for("autopilot on the new leader to count the dead voter", lambda: (
        one(s := scrape(new), "raftkv_autopilot_healthy") == 0 and one(s, "raftkv_autopilot_failure_tolerance") == 0))
