"""What the console's bounded search costs, on a fresh local 3-node cluster:

    python -m loadtest.bench.ui_search --keys 10000 --value-bytes 1600

Loads the keys (values without the needle), then prints, each over `--rounds` requests to a
follower: the latency of a search that finds nothing (so it scans to its bound: 10,000 keys or
16 MiB of values), against `GET /v1/kv/?recurse` (what a browser would otherwise fetch to filter
itself) with the bytes each answers; and the latency of a small PUT alone against the same PUTs
while another client searches without pause (the search holds the node's read lock while it scans).
"""

from __future__ import annotations

import argparse
import base64
import statistics
import tempfile
import threading
import time

import requests

from loadtest.harness.cluster import Cluster


def timed(session: requests.Session, method: str, url: str, rounds: int, **kw) -> tuple[list[float], int]:
    samples, size = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        resp = session.request(method, url, timeout=30, **kw)
        samples.append((time.perf_counter() - start) * 1000)
        resp.raise_for_status()
        size = len(resp.content)
    return samples, size


def line(name: str, samples: list[float], size: int | None = None) -> str:
    q = statistics.quantiles(samples, n=10)
    extra = f"  {size:>10,} bytes" if size is not None else ""
    return f"{name:<44} median {statistics.median(samples):8.1f} ms  p90 {q[-1]:8.1f} ms{extra}"


def puts_while_searching(s: requests.Session, put: str, search: str, count: int) -> list[float]:
    stop = threading.Event()

    def searching() -> None:
        other = requests.Session()
        deadline = time.monotonic() + 300
        while not stop.is_set() and time.monotonic() < deadline:
            other.get(search, timeout=30)

    worker = threading.Thread(target=searching)
    worker.start()
    try:
        time.sleep(0.2)
        return timed(s, "PUT", put, count, data=b"p" * 16)[0]
    finally:
        stop.set()
        worker.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--value-bytes", type=int, default=1600)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--puts", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        cluster = Cluster(root).start()
        try:
            leader = cluster.leader(timeout=30)
            follower = cluster.followers()[0].url
            s = requests.Session()
            value = base64.b64encode(b"x" * args.value_bytes).decode()
            for i in range(0, args.keys, 64):
                ops = [{"KV": {"Verb": "set", "Key": f"bench/{j:07d}", "Value": value}}
                       for j in range(i, min(i + 64, args.keys))]
                s.put(f"{leader.url}/v1/txn", json=ops, timeout=30).raise_for_status()
            print(f"{args.keys} keys of {args.value_bytes} bytes; {args.rounds} rounds each, to a follower")
            search = f"{follower}/v1/raftkv/ui/search?prefix=bench/&contains=needle"
            print(line("search, no match (scans to its bound)", *timed(s, "GET", search, args.rounds)))
            print(line("GET /v1/kv/bench/?recurse (all of it)",
                       *timed(s, "GET", f"{follower}/v1/kv/bench/?recurse", args.rounds)))
            put = f"{leader.url}/v1/kv/bench-put"
            alone: list[float] = []
            beside: list[float] = []
            for _ in range(4):  # in turns, so that the machine's noise falls on both alike
                alone += timed(s, "PUT", put, args.puts // 4, data=b"p" * 16)[0]
                beside += puts_while_searching(s, put, search.replace(follower, leader.url), args.puts // 4)
            print(line("PUT 16 bytes, alone", alone))
            print(line("PUT 16 bytes, while searches run on the leader", beside))
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
