"""Snapshot benchmark: for N keys of V-byte values on a local 3-node cluster, measure the
snapshot's time and size, the restart time to serving, peak memory, and write latency p99
while a snapshot is taken against p99 without one.

Automatic snapshots are off (so that the measured one is the only one); before the restart every
follower takes one too (as each node does on its own in service), so the restart measures loading
a snapshot and replaying the log after it, not replaying the whole log.

    python -m loadtest.bench.snapshot_bench --keys 100000 1000000 [--value-bytes 128] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import urllib.request

import aiohttp

from api.http_client import client_session
from loadtest.bench.quantiles import nearest_rank
from loadtest.harness.cluster import Cluster

TXN_OPS = 128


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


async def load(urls: list[str], keys: int, value_bytes: int, progress) -> None:
    value = base64.b64encode(b"x" * value_bytes).decode()
    batches = [range(i, min(i + TXN_OPS, keys)) for i in range(0, keys, TXN_OPS)]
    done = [0]

    async with client_session(connector=aiohttp.TCPConnector(limit=0),
                              timeout=aiohttp.ClientTimeout(total=60)) as s:
        async def worker(w: int) -> None:
            for b in range(w, len(batches), 8):
                ops = [{"KV": {"Verb": "set", "Key": f"bench/{i:08d}", "Value": value}} for i in batches[b]]
                for _attempt in range(5):
                    async with s.put(f"{urls[b % len(urls)]}/v1/txn", json=ops) as r:
                        await r.read()
                        if r.status == 200:
                            break
                    await asyncio.sleep(0.2)
                done[0] += len(batches[b])
                progress(done[0])

        await asyncio.gather(*(worker(w) for w in range(8)))


async def write_latencies(url: str, seconds: float, clients: int = 4,
                          spans: list[tuple[float, float]] | None = None) -> list[float]:
    """Sorted latencies of `clients` closed-loop writers for `seconds`; each write's (start,
    end) in time.monotonic() is added to `spans` when given."""
    lat: list[float] = []
    stop = time.monotonic() + seconds
    async with client_session(connector=aiohttp.TCPConnector(limit=0)) as s:
        async def client(c: int) -> None:
            n = 0
            while time.monotonic() < stop:
                t, started = time.perf_counter(), time.monotonic()
                async with s.put(f"{url}/v1/kv/lat/{c}/{n % 100}", data=b"y" * 128) as r:
                    await r.read()
                lat.append(time.perf_counter() - t)
                if spans is not None:
                    spans.append((started, time.monotonic()))
                n += 1

        await asyncio.gather(*(client(c) for c in range(clients)))
    return sorted(lat)


def p(lat: list[float], q: float) -> float:
    value = nearest_rank(lat, q)
    return float("nan") if value is None else value * 1000


def run_one(keys: int, value_bytes: int, root: str, command: list[str] | None = None) -> dict:
    cluster = Cluster(os.path.join(root, f"k{keys}"),
                      extra_args=["--snapshot-entries", "1000000000", "--snapshot-interval", "1000000"],
                      **({"command": command} if command else {})).start()
    try:
        leader = cluster.leader(timeout=60)
        urls = [n.url for n in cluster.nodes]
        t0 = time.monotonic()

        def progress(done: int) -> None:
            if done % (TXN_OPS * 200) < TXN_OPS:
                print(f"  loaded {done}/{keys} keys ({time.monotonic() - t0:.0f}s)", file=sys.stderr, flush=True)

        asyncio.run(load(urls, keys, value_bytes, progress))
        load_s = time.monotonic() - t0
        cluster.wait_applied(leader.status()["applied_index"], timeout=120)
        rss = {n.node_id: round(rss_mb(n.proc.pid), 1) for n in cluster.nodes}
        base = asyncio.run(write_latencies(leader.url, 5.0))

        def download() -> tuple[int, float]:
            t = time.monotonic()
            with urllib.request.urlopen(f"{leader.url}/v1/snapshot?stale", timeout=900) as r:
                return len(r.read()), time.monotonic() - t

        spans: list[tuple[float, float]] = []
        asked = [0.0]

        async def during():
            lat_task = asyncio.create_task(write_latencies(leader.url, 6.0, spans=spans))
            await asyncio.sleep(0.5)
            asked[0] = time.monotonic()
            size, seconds = await asyncio.to_thread(download)  # the snapshot is taken while writes run
            return await lat_task, size, seconds

        during_lat, size, get_s = asyncio.run(during())
        snap = leader.status()["snapshots"]
        # The writes that overlapped the snapshot being written (from the request to the writer's
        # end; the download that follows is not in it), beside those of the whole 6 s window.
        writing = sorted(end - start for start, end in spans
                         if start < asked[0] + (snap["last_duration_s"] or 0) and end > asked[0])
        for n in cluster.nodes:
            if n is not leader:
                with urllib.request.urlopen(f"{n.url}/v1/snapshot?stale", timeout=900) as r:
                    r.read()
        # The peak above holds the whole log, kept in memory until a snapshot compacts it; this is
        # the store's cost once every node has compacted (the log's memory may stay in the heap).
        time.sleep(1.0)
        compacted = {n.node_id: round(rss_mb(n.proc.pid), 1) for n in cluster.nodes}
        peak = {n.node_id: round(rss_mb(n.proc.pid, "VmHWM"), 1) for n in cluster.nodes}
        # Restart every node and time until the cluster serves a linearizable read of the data.
        for n in cluster.nodes:
            n.signal(signal.SIGKILL)
            n.proc.wait()
        t = time.monotonic()
        for n in cluster.nodes:
            n.start()
        cluster.leader(timeout=300)
        while True:
            try:
                with urllib.request.urlopen(f"{cluster.nodes[0].url}/v1/kv/bench/{keys - 1:08d}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.05)
        restart_s = time.monotonic() - t
        # A node as it runs in service: restarted from its snapshot (the log after it is short),
        # serving, once the start-up's transient buffers are gone.
        time.sleep(2.0)
        restarted = {n.node_id: round(rss_mb(n.proc.pid), 1) for n in cluster.nodes}
        return {
            "keys": keys, "value_bytes": value_bytes, "load_s": round(load_s, 1),
            "snapshot_s": round(snap["last_duration_s"] or 0, 2), "snapshot_file_bytes": size,
            "capture_pause_ms": round(snap["last_capture_pause_ms"] or 0, 3),
            "snapshot_get_s": round(get_s, 2), "restart_to_serving_s": round(restart_s, 2),
            "rss_mb": rss, "peak_rss_mb": peak, "rss_after_snapshots_mb": compacted,
            "rss_after_restart_mb": restarted,
            "write_p50_ms": round(p(base, 0.5), 2), "write_p99_ms": round(p(base, 0.99), 2),
            "write_p99_during_snapshot_ms": round(p(during_lat, 0.99), 2),
            "write_max_during_snapshot_ms": round(p(during_lat, 1.0), 2),
            "write_p99_while_writing_ms": round(p(writing, 0.99), 2), "writes_while_writing": len(writing),
            "writes_measured": [len(base), len(during_lat)],
        }
    finally:
        cluster.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.bench.snapshot_bench")
    ap.add_argument("--keys", type=int, nargs="+", default=[100_000])
    ap.add_argument("--value-bytes", type=int, default=128)
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--raftkv", metavar="PATH", help="a build to measure (a venv's bin/raftkv)")
    ap.add_argument("--label", default="", help="what the results call this build (e.g. 'before')")
    ap.add_argument("--keep-in", metavar="DIR", help="keep the nodes' data folders and logs here (default: removed)")
    args = ap.parse_args(argv)
    if args.raftkv and not os.access(args.raftkv, os.X_OK):
        print(f"snapshot_bench: --raftkv {args.raftkv}: not an executable", file=sys.stderr)
        return 2
    results = []
    with contextlib.ExitStack() as stack:
        root = args.keep_in or stack.enter_context(tempfile.TemporaryDirectory(prefix="raftkv-snapbench-"))
        for keys in args.keys:
            print(f"{keys} keys of {args.value_bytes} bytes:", file=sys.stderr, flush=True)
            results.append(run_one(keys, args.value_bytes, root, [args.raftkv] if args.raftkv else None))
            if args.label:
                results[-1]["build"] = args.label
            print(json.dumps(results[-1]), flush=True)
    print(f"{'keys':>9} {'snap s':>7} {'pause ms':>8} {'file MB':>8} {'restart s':>9} {'peak RSS MB':>11} "
          f"{'RSS after snap':>14} {'RSS restarted':>13} {'B/key peak/snap/restart':>23} "
          f"{'p99 ms':>7} {'p99 during':>10} {'max during':>10} {'p99 writing':>11}")
    for r in results:
        mbs = [max(r[k].values()) for k in ("peak_rss_mb", "rss_after_snapshots_mb", "rss_after_restart_mb")]
        per_key = "/".join(f"{mb * 2**20 / r['keys']:.0f}" for mb in mbs)
        print(f"{r['keys']:>9} {r['snapshot_s']:>7} {r['capture_pause_ms']:>8} {r['snapshot_file_bytes'] / 1e6:>8.1f} "
              f"{r['restart_to_serving_s']:>9} {mbs[0]:>11} {mbs[1]:>14} {mbs[2]:>13} {per_key:>23} "
              f"{r['write_p99_ms']:>7} {r['write_p99_during_snapshot_ms']:>10} "
              f"{r['write_max_during_snapshot_ms']:>10} {r['write_p99_while_writing_ms']:>11}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
