"""The load tools run end to end (tiny durations: these check the tools, not the speed)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys


def run(*args, timeout=180, env=None):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_bench_sweeps_its_own_cluster_and_writes_json_and_png(tmp_path):
    r = run("api.cli", "bench", "--workloads", "put", "get-stale", "--concurrency", "1", "4", "--duration", "1",
            "--warmup", "0.5", "--out", str(tmp_path), "--label", "smoke")
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((tmp_path / "bench-smoke.json").read_text())
    points = doc["runs"]["smoke"]["points"]
    assert [(p["workload"], p["concurrency"]) for p in points] == [("put", 1), ("put", 4), ("get-stale", 1),
                                                                   ("get-stale", 4)]
    assert all(p["ops_per_s"] > 0 and p["errors"] == 0 and p["p50_ms"] <= p["p99_ms"] <= p["max_ms"] for p in points)
    assert doc["ceiling"]["ops_per_s"] > 0
    assert "workload" in r.stdout and "bench: [4/4]" in r.stderr  # the table, and progress while it ran
    # bench draws the PNG when matplotlib is there, and the test extra installs it: so it must be there.
    assert importlib.util.find_spec("matplotlib") is not None, "the test extra installs matplotlib"
    assert (tmp_path / "bench-smoke.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_regenerates_benchmarks_md_from_results(tmp_path):
    results = os.path.join(os.path.dirname(__file__), "..", "..", "loadtest", "results")
    out = tmp_path / "B.md"
    r = run("loadtest.bench.report", "--results", results, "--out", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert text.startswith("# Benchmarks") and "## How to run" in text and "Snapshots" in text


def test_locust_scenarios_run_headless_against_a_local_cluster(tmp_path):
    # Not imported here: locust monkey-patches with gevent when imported (it runs in its own process).
    assert importlib.util.find_spec("locust") is not None, "the test extra installs locust"
    r = run("api.cli", "loadtest", "--scenario", "mixed", "--time", "4s", "--users", "4", "--out", str(tmp_path))
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    rows = (tmp_path / "mixed_stats.csv").read_text().splitlines()
    aggregated = next(line for line in rows if ",Aggregated," in line).split(",")
    assert int(aggregated[2]) > 20 and int(aggregated[3]) == 0, aggregated  # requests, failures
    assert (tmp_path / "mixed.html").exists()


def test_cpu_account_counts_every_write_in_the_nodes(tmp_path):
    out = tmp_path / "cpu.json"
    r = run("loadtest.bench.cpu_account", "--no-etcd", "--clients", "4", "--duration", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    figures = json.loads(out.read_text())["raftkv"]
    nodes, measured = figures["nodes"], figures["ops_per_s"] * 2
    # The bench counts every write it sent (no warm-up here); the nodes counted the same writes.
    assert abs(sum(n["writes"] for n in nodes) - measured) <= 4 + 1, (nodes, measured)
    assert [n["role"] for n in nodes].count("leader") == 1
    assert all(0 < n["write_ms_in_node"] < 1000 for n in nodes if n["writes"])
    assert 1 <= figures["writes_per_entry"] <= 4  # at most one write per client in an entry
    assert "writes per log entry" in r.stdout
