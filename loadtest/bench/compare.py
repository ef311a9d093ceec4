"""raftkv against etcd 3.4 on this machine, in one run, with the same load generator.

    python -m loadtest.bench.compare [--duration 10] [--out bench-results]

Runs the same closed-loop workloads (puts; linearizable and stale/serializable reads) at 1
and 32 clients against a local 3-node raftkv cluster and a local 3-node etcd cluster, then
prints the ratios the project's targets are stated in, and saves JSON for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

from loadtest.bench.etcd import EtcdCluster
from loadtest.bench.sweep import Target, machine, measure_ceiling, measure_point
from loadtest.harness.cluster import Cluster

WORKLOADS = [("put", "put"), ("get-consistent", "get-consistent"), ("get-stale", "get-stale")]


def sweep(target: Target, label: str, concurrency: list[int], procs: int, warmup: float, duration: float):
    points = []
    for workload, _ in WORKLOADS:
        for c in concurrency:
            print(f"compare: {label} {workload} x{c} ...", file=sys.stderr, flush=True)
            points.append(measure_point(target, workload, c, procs, warmup, duration))
            print(f"compare:   {points[-1]['ops_per_s']} ops/s, p50 {points[-1]['p50_ms']} ms, "
                  f"p99 {points[-1]['p99_ms']} ms", file=sys.stderr, flush=True)
    return points


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.bench.compare")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--out", default="bench-results")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    value = b"v" * 128
    results = {"machine": machine(), "value_bytes": 128, "key_bytes": 16, "runs": {}}
    results["ceiling"] = measure_ceiling(max(args.concurrency), args.procs, args.warmup, 5.0)
    root = tempfile.mkdtemp(prefix="raftkv-compare-")
    try:
        cluster = Cluster(os.path.join(root, "raftkv")).start()
        try:
            cluster.leader(timeout=60)
            target = Target("raftkv", [n.http for n in cluster.nodes], 16, value, 10_000)
            results["runs"]["raftkv"] = {"points": sweep(target, "raftkv", args.concurrency, args.procs,
                                                         args.warmup, args.duration)}
        finally:
            cluster.stop()
        os.makedirs(os.path.join(root, "etcd"))
        etcd = EtcdCluster(os.path.join(root, "etcd")).start()
        try:
            target = Target("etcd", etcd.clients, 16, value, 10_000)
            results["runs"]["etcd"] = {"points": sweep(target, "etcd", args.concurrency, args.procs,
                                                       args.warmup, args.duration)}
        finally:
            etcd.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    table = []
    for workload, _ in WORKLOADS:
        for c in args.concurrency:
            r, e = (next(p for p in results["runs"][name]["points"]
                         if (p["workload"], p["concurrency"]) == (workload, c)) for name in ("raftkv", "etcd"))
            table.append({"workload": workload, "concurrency": c, "raftkv_ops": r["ops_per_s"],
                          "etcd_ops": e["ops_per_s"], "ratio": round(r["ops_per_s"] / max(e["ops_per_s"], 1e-9), 2),
                          "raftkv_p50": r["p50_ms"], "etcd_p50": e["p50_ms"], "raftkv_p99": r["p99_ms"],
                          "etcd_p99": e["p99_ms"]})
    results["comparison"] = table
    print(f"client ceiling (trivial server, {max(args.concurrency)} clients): {results['ceiling']['ops_per_s']} req/s")
    print(f"{'workload':<15} {'conc':>4} {'raftkv/s':>9} {'etcd/s':>9} {'ratio':>6} {'p50 r/e ms':>13} "
          f"{'p99 r/e ms':>13}")
    for t in table:
        print(f"{t['workload']:<15} {t['concurrency']:>4} {t['raftkv_ops']:>9} {t['etcd_ops']:>9} {t['ratio']:>6} "
              f"{t['raftkv_p50']!s:>6}/{t['etcd_p50']!s:<6} {t['raftkv_p99']!s:>6}/{t['etcd_p99']!s:<6}")
    with open(os.path.join(args.out, "compare-etcd.json"), "w") as f:
        json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
