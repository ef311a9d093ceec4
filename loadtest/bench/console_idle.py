"""What an idle open console page costs the node that serves it: the node process's CPU
seconds (user + system, from /proc) over a window with no page and over one with a page's
event stream open (/v1/raftkv/ui/events, what the page holds; read here by a plain HTTP
client, which costs the node exactly what a browser does), in turns.

    python -m loadtest.bench.console_idle --window 60 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import urllib.request

from loadtest.harness.cluster import Cluster


def process_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def hold_stream(url: str, stop: threading.Event, got: list[int]) -> None:
    with urllib.request.urlopen(url, timeout=30) as resp:
        while not stop.is_set():
            line = resp.readline()
            if not line:
                return
            got[0] += len(line)


def window(pid: int, seconds: float) -> float:
    before = process_cpu_s(pid)
    time.sleep(seconds)
    return process_cpu_s(pid) - before


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--window", type=float, default=60.0, help="seconds per measurement")
    p.add_argument("--rounds", type=int, default=2, help="pairs of (no page, one page)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        cluster = Cluster(root).start()
        try:
            cluster.leader()
            node = cluster.followers()[0]  # a page is usually on any node; a follower fans out the same
            pid = node.proc.pid
            time.sleep(5)  # past start-up
            for r in range(args.rounds):
                idle = window(pid, args.window)
                stop, got = threading.Event(), [0]
                t = threading.Thread(target=hold_stream, args=(f"{node.url}/v1/raftkv/ui/events", stop, got),
                                     daemon=True)
                t.start()
                time.sleep(1)  # the first push (a fan-out) is the page's opening cost, not its idle cost
                opened = window(pid, args.window)
                stop.set()
                print(f"round {r + 1}: node CPU over {args.window:g} s: no page {idle:.2f} s, one idle page "
                      f"{opened:.2f} s (difference {opened - idle:+.2f} s; {got[0]} bytes streamed)", flush=True)
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
