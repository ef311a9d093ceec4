"""Join benchmark: for N keys on a local 3-node cluster, the time from starting a fourth node
with `--join` to its promotion to voter, and to holding everything committed.

    python -m loadtest.bench.join_bench --keys 10000 1000000 [--value-bytes 128] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.request

from loadtest.bench.snapshot_bench import load
from loadtest.harness.cluster import HOST, Cluster, NodeProcess, free_ports


def _voter(node: NodeProcess, raft: str) -> bool:
    try:
        with urllib.request.urlopen(f"{node.url}/v1/operator/raft/configuration?stale", timeout=2) as resp:
            return any(s["Address"] == raft and s["Voter"] for s in json.loads(resp.read())["Servers"])
    except OSError:
        return False


def measure(keys: int, value_bytes: int) -> dict:
    root = tempfile.mkdtemp(prefix="raftkv-join-")
    cluster = Cluster(root).start()
    try:
        leader = cluster.leader(timeout=60)
        started = time.monotonic()
        last = [0.0]

        def progress(done: int) -> None:
            if time.monotonic() - last[0] > 5:
                last[0] = time.monotonic()
                print(f"join_bench: loaded {done:,}/{keys:,} keys", file=sys.stderr, flush=True)

        asyncio.run(load([n.url for n in cluster.nodes], keys, value_bytes, progress))
        load_s = time.monotonic() - started
        commit = leader.status()["commit_index"]
        raft, http = (f"{HOST}:{p}" for p in free_ports(2))
        new = NodeProcess("n4", raft, http, os.path.join(root, "n4"), os.path.join(root, "n4.log"), [],
                          [*cluster.secret_args, "--join", ",".join(n.http for n in cluster.nodes)])
        cluster.nodes.append(new)
        t0 = time.monotonic()
        new.start()
        cluster.wait_for("the new node to become a voter", lambda: _voter(leader, raft), timeout=900, interval=0.05)
        to_voter = time.monotonic() - t0
        cluster.wait_applied(commit, nodes=[new], timeout=900)
        caught_up = time.monotonic() - t0
        status = new.status()
        return {"keys": keys, "value_bytes": value_bytes, "load_s": round(load_s, 1),
                "join_to_voter_s": round(to_voter, 2), "join_to_caught_up_s": round(caught_up, 2),
                "keys_on_new_node": status["keys"] if status else None}
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench.join_bench", description=__doc__.splitlines()[0])
    p.add_argument("--keys", type=int, nargs="+", default=[10_000])
    p.add_argument("--value-bytes", type=int, default=128)
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    results = []
    for keys in args.keys:
        r = measure(keys, args.value_bytes)
        results.append(r)
        print(f"{r['keys']:>9,} keys: --join to voter {r['join_to_voter_s']:.2f} s, to caught up "
              f"{r['join_to_caught_up_s']:.2f} s (load took {r['load_s']:.0f} s; new node holds "
              f"{r['keys_on_new_node']} keys)", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
