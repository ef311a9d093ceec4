"""What making loop-side reads consistent costs: the apply lock (what raftkv uses) against
answering each read from a frozen view of the tables (the alternative), in one process.

    python -m loadtest.bench.read_lock [--keys 100000] [--applies 20000] [--reads 2000]

Prints per-apply and per-read costs in microseconds. The apply path runs on the tick thread
for every entry, so the lock's cost there is what a write pays; a prefix read pays it once.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import types

from node.codec import SetOp, encode
from node.reads import ReadView
from node.state_machine import KVStateMachine


def _store(keys: int) -> KVStateMachine:
    sm = KVStateMachine()
    batch = [SetOp(f"app/{i:08d}", b"v" * 128, 0, None) for i in range(keys)]
    for start in range(0, keys, 512):
        sm.apply(start // 512 + 1, encode(batch[start:start + 512]))
    return sm


def _time(fn, n: int) -> float:
    """Microseconds per call, best of three."""
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, time.perf_counter() - t)
    return best / n * 1e6


def measure(keys: int, applies: int, reads: int) -> dict:
    sm, lock = _store(keys), threading.Lock()
    payloads = [encode([SetOp(f"app/{i % keys:08d}", b"w" * 128, 0, None)]) for i in range(applies)]
    base = sm.applied_index + 1

    def apply_bare(i):
        sm.apply(base + i, payloads[i])

    def apply_locked(i):
        with lock:
            sm.apply(base + i, payloads[i])

    holder = types.SimpleNamespace(state=sm)
    view = ReadView(lock, holder)

    def read_locked(i):
        with view as v:
            v.items_with_prefix(f"app/{i % 100:02d}")

    def read_frozen(i):
        # The alternative: freeze the tables for the read, thaw after (writes meanwhile go to a delta).
        sm.entries.freeze()
        try:
            sm.items_with_prefix(f"app/{i % 100:02d}")
        finally:
            sm.entries.thaw()

    return {
        "keys": keys,
        "apply_us": round(_time(apply_bare, applies), 2),
        "apply_with_lock_us": round(_time(apply_locked, applies), 2),
        "prefix_read_with_lock_us": round(_time(read_locked, reads), 1),
        "prefix_read_frozen_view_us": round(_time(read_frozen, reads), 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.bench.read_lock")
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--applies", type=int, default=20_000)
    ap.add_argument("--reads", type=int, default=2_000)
    args = ap.parse_args()
    print(json.dumps(measure(args.keys, args.applies, args.reads)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
