"""The compiled load generator against a real local cluster, and the comparison tool end to end
with two raftkv builds (tiny durations: these check the tools, not the speed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import requests

from loadtest.bench import wrk

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")


def test_wrk_driver_counts_answers_errors_and_its_own_cpu_on_a_real_cluster(cluster):
    nodes = [n.http for n in cluster.nodes]
    # Nothing written yet: every stale read is a 404, and a non-2xx answer is an error, not an op.
    missing = wrk.measure_point("raftkv", nodes, "get-stale", 3, 0, 1, keyspace=50)
    assert missing["errors"] > 0 and missing["ops_per_s"] == 0 and missing["requests"] == 0

    put = wrk.measure_point("raftkv", nodes, "put", 4, 0, 2, keyspace=50)
    assert put["errors"] == 0 and put["requests"] > 0 and put["ops_per_s"] > 0
    assert 0 < put["p50_ms"] <= put["p99_ms"] <= put["max_ms"]
    assert put["generator_cpu_s"] > 0 and put["generator_cores"] > 0 and put["generator_us_per_op"] > 0
    # one wrk per node at once, the 4 connections split 2/1/1, every node answering
    assert [(p["node"], p["connections"]) for p in put["processes"]] == list(zip(nodes, [2, 1, 1], strict=True))
    assert all(p["requests"] > 0 for p in put["processes"])
    # The keys are the Python generator's: 16 zero-padded digits, 128-byte values.
    hits = [requests.get(f"{cluster.nodes[0].url}/v1/kv/{i:016d}?raw", timeout=10) for i in range(50)]
    assert any(h.status_code == 200 for h in hits)
    assert all(h.content == b"v" * 128 for h in hits if h.status_code == 200)

    # Every key written, then one client: the three nodes take turns (three 1-second runs).
    for i in range(50):
        requests.put(f"{cluster.nodes[0].url}/v1/kv/{i:016d}", data=b"v" * 128, timeout=10).raise_for_status()
    stale = wrk.measure_point("raftkv", nodes, "get-stale", 1, 0, 3, keyspace=50)
    assert stale["errors"] == 0 and stale["ops_per_s"] > 0  # how long it ran is a benchmark figure, not a check
    assert [p["node"] for p in stale["processes"]] == nodes and all(p["requests"] > 0 for p in stale["processes"])
    consistent = wrk.measure_point("raftkv", nodes, "get-consistent", 3, 0, 1, keyspace=50)
    assert consistent["errors"] == 0 and consistent["ops_per_s"] > 0


def test_compare_measures_two_builds_with_both_generators_and_the_report_shows_them(tmp_path):
    raftkv = os.path.join(os.path.dirname(sys.executable), "raftkv")
    assert os.access(raftkv, os.X_OK), "the venv's raftkv script (pip install -e .)"
    out = tmp_path / "results" / "compare.json"
    r = subprocess.run([sys.executable, "-m", "loadtest.bench.compare", "--no-etcd", "--no-ceiling",
                        "--raftkv-build", f"before={raftkv}", "--raftkv-build", f"after={raftkv}",
                        "--workloads", "get-stale", "--concurrency", "2", "--duration", "1", "--warmup", "0",
                        "--keyspace", "100", "--note", "smoke", "--out", str(out)],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "compare: [4/4]" in r.stderr  # progress while it ran
    doc = json.loads(out.read_text())
    assert [s["label"] for s in doc["systems"]] == ["before", "after"]
    assert doc["systems"][0]["build"]["command"] == [raftkv] and doc["systems"][0]["build"]["commit"]
    cells = {(p["system"], p["generator"]) for p in doc["points"]}
    assert cells == {("before", "python"), ("before", "wrk"), ("after", "python"), ("after", "wrk")}
    assert all(p["errors"] == 0 and p["ops_per_s"] > 0 and p["generator_cores"] > 0 for p in doc["points"])
    assert (tmp_path / "results" / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Before and after: each build against before" in r.stdout

    md = tmp_path / "B.md"
    subprocess.run([sys.executable, "-m", "loadtest.bench.report", "--results", str(out.parent), "--out", str(md)],
                   check=True, capture_output=True, timeout=60)
    text = md.read_text()
    assert "one run, two load generators" in text and "**smoke**" in text and "compare.png" in text
