"""What waking an idle process costs on this machine: a one-byte ping-pong between two Python
processes over loopback TCP, with the two pinned to one vCPU, to two different vCPUs, or left
to the scheduler.

    python -m loadtest.bench.wake_hop [--round-trips 3000] [--think-ms 0.5] [--json FILE]

Each round trip starts from idle (the pinger sleeps `--think-ms` between them, as a one-client
load does between requests), so each is two wake-ups of a process blocked in epoll. A write or a
read through raftkv is a chain of such hops (client, node, leader, followers); the difference
between "apart" and "together" is what one hop across vCPUs adds (BENCHMARKS.md, "Stop 29").
On a machine with one CPU only "free" is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import sys
import time

from loadtest.bench.quantiles import nearest_rank

HOST = "127.0.0.1"


def _echo(port: int, cpu: int | None) -> None:
    """Child: answer every byte with itself until the connection closes, then exit."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    conn = socket.create_connection((HOST, port))
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        data = conn.recv(1)
        if not data:
            os._exit(0)
        conn.sendall(data)


def round_trips_us(placement: tuple[int | None, int | None], count: int, think_s: float) -> list[float]:
    """`count` round trips (µs, sorted) with the pinger on vCPU placement[0], the echo on [1]."""
    server = socket.socket()
    server.bind((HOST, 0))
    server.listen(1)
    port = server.getsockname()[1]
    child = os.fork()
    if child == 0:
        server.close()
        try:
            _echo(port, placement[1])
        finally:
            os._exit(1)
    mask = os.sched_getaffinity(0)
    try:
        if placement[0] is not None:
            os.sched_setaffinity(0, {placement[0]})
        server.settimeout(10)
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.setblocking(False)
        poller = select.epoll()
        poller.register(conn.fileno(), select.EPOLLIN)
        times = []
        for _ in range(count):
            started = time.perf_counter()
            conn.send(b"x")
            if not poller.poll(5.0) or conn.recv(1) != b"x":
                raise RuntimeError("the echo process stopped answering")
            times.append((time.perf_counter() - started) * 1e6)
            time.sleep(think_s)
        conn.close()
        poller.close()
    finally:
        os.sched_setaffinity(0, mask)
        server.close()
        os.waitpid(child, 0)
    return sorted(times)


def placements(cpus: list[int]) -> dict[str, tuple[int | None, int | None]]:
    if len(cpus) < 2:
        return {"free": (None, None)}
    return {"together": (cpus[0], cpus[0]), "apart": (cpus[0], cpus[1]),
            "apart, swapped": (cpus[1], cpus[0]), "free": (None, None)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.bench.wake_hop", description=__doc__.split("\n\n")[0])
    ap.add_argument("--round-trips", type=int, default=3000, help="round trips per placement (default 3000)")
    ap.add_argument("--think-ms", type=float, default=0.5, help="idle time between round trips (default 0.5)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = ap.parse_args(argv)
    if not 1 <= args.round_trips <= 1_000_000 or not 0 <= args.think_ms <= 100:
        print("wake_hop: --round-trips must be 1-1000000 and --think-ms 0-100", file=sys.stderr)
        return 2
    cpus = sorted(os.sched_getaffinity(0))
    results = {}
    print(f"{'placement':<16} {'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8}")
    for name, placement in placements(cpus).items():
        times = round_trips_us(placement, args.round_trips, args.think_ms / 1000)
        results[name] = {f"p{round(f * 100)}_us": round(nearest_rank(times, f) or 0.0, 1) for f in (0.5, 0.9, 0.99)}
        results[name]["round_trips"] = len(times)
        r = results[name]
        print(f"{name:<16} {r['p50_us']:>8} {r['p90_us']:>8} {r['p99_us']:>8}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpus": cpus, "think_ms": args.think_ms, "placements": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
