"""PySyncObj alone: how many writes/s the Raft layer commits without the HTTP API.

Three node processes, each a `RaftNode` (the same journal, fsync and batching settings as
`raftkv serve`) with no HTTP server; on every node C/3 closed-loop clients propose SetOps
of the same size as the HTTP benchmark's. The difference to `raftkv bench --workloads put`
at the same concurrency is the cost of the HTTP layer.

    python -m loadtest.bench.raft_only [--clients 32] [--duration 10] [--value-bytes 128] [--on leader]

`--on leader` runs every client on the leader instead: with one client, the Raft path's floor
for a write, to set beside a whole HTTP write (issue 15's one-client target). Each line of
output names the node that led at the end and counts failed proposals (a run of failures would otherwise
pass for a slow run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time

from loadtest.bench.quantiles import ms
from loadtest.harness.cluster import HOST, free_ports


def node_main(args) -> int:
    from node.codec import SetOp
    from node.raft import NodeAddresses, RaftNode

    node = RaftNode(NodeAddresses(args.id, args.raft, f"{HOST}:1", peers=args.peers.split(",")), args.data_dir)
    node.admit(timeout_s=30)  # a new cluster: the peers confirm it
    value = b"v" * args.value_bytes

    async def run() -> dict:
        node.attach(asyncio.get_running_loop())
        await node.wait_for_leader(30)
        await asyncio.sleep(1.0)
        clients = args.clients if args.on == "all" or node.is_leader else 0  # `--on leader`: told the total
        latencies: list[float] = []
        failures: dict[str, int] = {}
        start = time.monotonic()
        measure_from, stop_at = start + args.warmup, start + args.warmup + args.duration

        async def client(c: int) -> None:
            rng = random.Random(c)
            while (now := time.monotonic()) < stop_at:
                t = time.perf_counter()
                try:
                    await node.propose(SetOp(f"{rng.randrange(10_000):016d}", value), 10.0)
                except Exception as exc:  # counted and printed: a run of failures is not a measurement
                    failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                    continue
                if now >= measure_from:
                    latencies.append(time.perf_counter() - t)

        await asyncio.gather(*(client(c) for c in range(clients)))
        # Keep serving Raft while the other nodes finish: a node with no clients (fewer clients
        # than nodes) serves to the end too, or the others lose their majority.
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()) + 2.0)
        return {"id": args.id, "commits": len(latencies), "latencies": sorted(latencies), "failures": failures,
                "leader": node.is_leader}

    try:
        print(json.dumps(asyncio.run(run())), flush=True)
    finally:
        node.close()
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.bench.raft_only")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--value-bytes", type=int, default=128)
    ap.add_argument("--on", choices=["all", "leader"], default="all",
                    help="the clients spread over the nodes (a follower forwards to the leader), or all on the leader")
    ap.add_argument("--node", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--id")
    ap.add_argument("--raft")
    ap.add_argument("--peers")
    ap.add_argument("--data-dir")
    args = ap.parse_args(argv)
    if args.node:
        return node_main(args)
    ports = free_ports(3)
    rafts = [f"{HOST}:{p}" for p in ports]
    shares = [args.clients // 3 + (1 if i < args.clients % 3 else 0) for i in range(3)]
    if args.on == "leader":  # every node is told them all, and only the leader runs them
        shares = [args.clients] * 3
    with tempfile.TemporaryDirectory(prefix="raftkv-raftonly-") as root:
        procs = [subprocess.Popen(
            [sys.executable, "-m", "loadtest.bench.raft_only", "--node", "--id", f"n{i + 1}", "--raft", rafts[i],
             "--peers", ",".join(rafts), "--data-dir", os.path.join(root, f"n{i + 1}"), "--clients", str(shares[i]),
             "--on", args.on,
             "--duration", str(args.duration), "--warmup", str(args.warmup), "--value-bytes", str(args.value_bytes)],
            stdout=subprocess.PIPE, text=True) for i in range(3)]
        results = [json.loads(p.communicate(timeout=args.duration + 120)[0].strip().splitlines()[-1]) for p in procs]
    lat = sorted(x for r in results for x in r["latencies"])
    commits = sum(r["commits"] for r in results)
    summary = {"clients": args.clients, "value_bytes": args.value_bytes,
               "commits_per_s": round(commits / args.duration, 1), "p50_ms": ms(lat, 0.5), "p99_ms": ms(lat, 0.99),
               "per_node": {r["id"] + (" (leader)" if r["leader"] else ""): r["commits"] for r in results},
               "failures": {r["id"]: r["failures"] for r in results if r["failures"]}}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
