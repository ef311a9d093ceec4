"""Where a write's CPU goes: CPU microseconds per operation, per process and per thread.

    python -m loadtest.bench.cpu_account [--workload put] [--clients 32] [--duration 8] [--generator wrk]
                                         [--no-etcd] [--out FILE]

Starts a 3-node cluster, runs one closed-loop point of `raftkv bench` (or of wrk, the compiled
generator: `--generator wrk`, loadtest/bench/wrk.py) against it and reads
/proc before and after: the client process, and for every node its event-loop thread (the
HTTP front, the proposer, the replies) and its other threads (PySyncObj's tick thread:
AppendEntries pickling, sockets, apply, journal writes and fdatasync; the snapshot writer).
The same for etcd (Go: its main thread is one of many) when `etcd` is installed. On this
2-core machine the sums say which part would have to get cheaper for more throughput.

For raftkv it also reads each node's /metrics around the point: how many of the writes each node
answered, their mean time inside the node (from the parsed request to the answer), and how many
writes a log entry carried. Together with the client's latency they show how much of a write's
time a load generator spends outside the nodes, and how well it lets the leader batch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from loadtest.bench import wrk
from loadtest.bench.compare import KEY_BYTES, VALUE_BYTES, prefill
from loadtest.bench.etcd import EtcdCluster
from loadtest.bench.sweep import Target
from loadtest.harness.cluster import Cluster

TICK = os.sysconf("SC_CLK_TCK")
KEYSPACE = 10_000  # wrk's keys (its default), written before a read workload


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of every thread of a process."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.bench.cpu_account")
    ap.add_argument("--workload", default="put")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--generator", choices=["python", "wrk"], default="python",
                    help="the load generator: `raftkv bench`'s Python clients, or wrk")
    ap.add_argument("--out", help="write the figures as JSON here")
    ap.add_argument("--no-etcd", action="store_true", help="raftkv only (before/after runs of one build)")
    args = ap.parse_args(argv)
    if args.generator == "wrk" and not wrk.available():
        print("cpu_account: wrk is not installed (Debian's package `wrk`)", file=sys.stderr)
        return 2
    with_etcd = shutil.which("etcd") is not None and not args.no_etcd
    figures = {"raftkv": account(args, "raftkv"), "etcd": account(args, "etcd") if with_etcd else None}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


def account(args, system: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="raftkv-cpu-") as root:
        if system == "etcd":
            cluster = EtcdCluster(root).start()
            pids, addr = [p.pid for p in cluster.procs], ",".join(cluster.clients)
            leader_pid = None
        else:
            cluster = Cluster(root).start()
            leader_pid = cluster.leader(timeout=60).proc.pid
            pids, addr = [n.proc.pid for n in cluster.nodes], ",".join(n.http for n in cluster.nodes)
        try:
            if args.generator == "wrk" and args.workload != "put":  # wrk reads the keyspace's keys: they must exist
                target = Target(system, addr.split(","), KEY_BYTES, b"v" * VALUE_BYTES, KEYSPACE)
                asyncio.run(asyncio.wait_for(prefill(target, KEYSPACE), 300))
            nodes = cluster.nodes if system == "raftkv" and args.workload == "put" else []
            counters_before = [write_counters(n.url) for n in nodes]
            before = {pid: thread_cpu(pid) for pid in pids}
            if args.generator == "wrk":
                point = wrk.measure_point(system, [a.removeprefix("http://") for a in addr.split(",")], args.workload,
                                          args.clients, 0, args.duration)
                client_s = point["generator_cpu_s"]
            else:
                client_before = children_cpu()
                flag = "--etcd" if system == "etcd" else "--addr"
                subprocess.run([sys.executable, "-m", "api.cli", "bench", flag, addr, "--workloads", args.workload,
                                "--concurrency", str(args.clients), "--duration", str(args.duration), "--warmup",
                                "0", "--no-ceiling", "--out", os.path.join(root, "bench")],
                               stdout=subprocess.DEVNULL, check=True, timeout=args.duration + 120)
                client_s = children_cpu() - client_before
                with open(os.path.join(root, "bench", f"bench-{system}.json")) as f:
                    point = json.load(f)["runs"][system]["points"][0]
            after = {pid: thread_cpu(pid) for pid in pids}
            counters = [{k: v - b[k] for k, v in write_counters(n.url).items()}
                        for n, b in zip(nodes, counters_before, strict=True)]
        finally:
            cluster.stop()
    # wrk counts its answers; bench start-up is idle time for the nodes: a slight overcount
    ops = point["requests"] if args.generator == "wrk" else point["ops_per_s"] * args.duration
    rows = []
    for i, pid in enumerate(pids):
        loop_s = after[pid].get(pid, 0) - before[pid].get(pid, 0)  # the main thread runs the event loop
        other_s = sum(v - before[pid].get(t, 0) for t, v in after[pid].items() if t != pid)
        role = "node" if leader_pid is None else "leader" if pid == leader_pid else "follower"
        row = {"node": f"n{i + 1}", "role": role, "main_thread_us": round(1e6 * loop_s / ops),
               "other_threads_us": round(1e6 * other_s / ops)}
        if counters:
            c = counters[i]
            row.update(writes=int(c["writes"]), write_ms_in_node=round(1e3 * c["seconds"] / c["writes"], 2)
                       if c["writes"] else None)
        rows.append(row)
    nodes_us = sum(r["main_thread_us"] + r["other_threads_us"] for r in rows)
    figures = {"system": system, "generator": args.generator, "workload": args.workload, "clients": args.clients,
               "ops_per_s": point["ops_per_s"],
               "p99_ms": point["p99_ms"], "client_us": round(1e6 * client_s / ops), "nodes": rows,
               "nodes_total_us": nodes_us}
    if counters:
        writes, entries = sum(c["writes"] for c in counters), counters[0]["entries"]
        figures["writes_per_entry"] = round(writes / entries, 2) if entries else None
        # Little's law over the closed loop: each client always has one write outstanding
        figures["client_mean_ms"] = round(1e3 * args.clients / point["ops_per_s"], 2)
    print(f"{system} {args.workload} x{args.clients} ({args.generator}): {point['ops_per_s']} ops/s, "
          f"p99 {point['p99_ms']} ms; "
          f"CPU per operation (µs):")
    print(f"  client (load generator)   {figures['client_us']:>6}")
    for r in rows:
        what = ("event loop (HTTP)", "Raft threads") if system == "raftkv" else ("main thread", "other threads")
        print(f"  {r['node']} {r['role']:<8}  {what[0]:<17} {r['main_thread_us']:>6}   "
              f"{what[1]} {r['other_threads_us']:>6}")
    print(f"  all nodes                 {nodes_us:>6}")
    if counters:
        print(f"  writes per log entry {figures['writes_per_entry']}; mean time a write: "
              f"{figures['client_mean_ms']} ms at the client, in the nodes:")
        for r in rows:
            print(f"  {r['node']} {r['role']:<8}  {r['writes']:>7} writes  {r['write_ms_in_node']} ms")
    return figures


def write_counters(url: str) -> dict[str, float]:
    """A node's totals so far: PUT /v1/kv answers (count, seconds) and log entries appended."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {"writes": 0.0, "seconds": 0.0, "entries": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("raftkv_http_request_duration_seconds") and s.labels.get("method") == "PUT":
                if s.name.endswith("_count"):
                    out["writes"] += s.value
                elif s.name.endswith("_sum"):
                    out["seconds"] += s.value
            elif s.name == "raftkv_raft_entries_appended_total":
                out["entries"] += s.value
    return out


def children_cpu() -> float:
    """CPU seconds of the waited-for children of this process (the bench client and its workers)."""
    usage = os.times()
    return usage.children_user + usage.children_system


if __name__ == "__main__":
    sys.exit(main())
