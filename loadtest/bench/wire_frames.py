"""CPU per Raft frame, sent and received: PySyncObj's own framing (pickle protocol 2, zlib level 3)
against raftkv's (node.engine.wire.encode_frame: protocol 4, zlib stored blocks below 64 KiB).

    python -m loadtest.bench.wire_frames

The frames a write produces: the `next_node_idx` a follower acknowledges with, and an
`append_entries` carrying one entry of 1 or 32 writes (16-byte keys, 128-byte values: random
bytes, and the repeated letter `raftkv bench` writes). Receiving is the same restricted decoder
for both (wire.decompress, wire.loads). CPU time per frame, best of 5 alternating rounds.
"""

from __future__ import annotations

import os
import struct
import time
import zlib

import pysyncobj.pickle as pysyncobj_pickle

from node.engine import wire


def _entry(values: list[bytes], dumps) -> bytes:
    return b"\x00" + dumps((0, (b"".join(values),)))


def _messages(make_value, dumps) -> dict[str, dict]:
    def append(writes: int) -> dict:
        return {"type": "append_entries", "term": 3, "commit_index": 1000, "prevLogIdx": 1000, "prevLogTerm": 3,
                "entries": [(_entry([make_value() for _ in range(writes)], dumps), 1001, 3)]}
    return {"next_node_idx": {"type": "next_node_idx", "next_node_idx": 12345, "reset": False, "success": True},
            "append_entries 1 write": append(1), "append_entries 32 writes": append(32)}


def pysyncobj_frame(message) -> bytes:
    data = zlib.compress(pysyncobj_pickle.dumps(message), 3)
    return struct.pack("i", len(data)) + data


def receive(frame: bytes):
    return wire.loads(wire.decompress(frame[4:]))


def cpu_us(fn, arg, n: int = 2000) -> float:
    started = time.process_time()
    for _ in range(n):
        fn(arg)
    return (time.process_time() - started) / n * 1e6


def main() -> int:
    values = {"random": lambda: os.urandom(16 + 128), "letters": lambda: b"k" * 16 + b"v" * 128}
    for kind, make in values.items():
        # each side's entries as its own encoder pickles them (PySyncObj: protocol 2; raftkv: 4)
        old_msgs, new_msgs = _messages(make, pysyncobj_pickle.dumps), _messages(make, wire.dumps)
        for name in old_msgs:
            old, new = old_msgs[name], new_msgs[name]
            old_frame, new_frame = pysyncobj_frame(old), wire.encode_frame(new)
            assert receive(old_frame) == old and receive(new_frame) == new
            best: dict[str, float] = {}
            for _ in range(5):
                for label, fn, arg in (("send old", pysyncobj_frame, old), ("send new", wire.encode_frame, new),
                                       ("recv old", receive, old_frame), ("recv new", receive, new_frame)):
                    best[label] = min(best.get(label, 1e9), cpu_us(fn, arg))
            print(f"{kind:8} {name:25} bytes {len(old_frame):5} -> {len(new_frame):5}   "
                  f"send {best['send old']:6.1f} -> {best['send new']:5.1f} µs   "
                  f"receive {best['recv old']:6.1f} -> {best['recv new']:5.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
