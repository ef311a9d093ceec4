"""What happened to the cluster as this node saw it, for the console (api/ui/): leader
changes, elections, membership changes and snapshots, in a bounded ring in memory.

Recorded where those events are logged today (node.raft, from the tick thread and the
snapshot writer's completion), read by the event loop: a lock guards the ring, and
`on_record` (the node posts a Pulse through its LoopBridge) wakes the console's streams.
Lost at a restart, like the log lines it mirrors; the log stays the record.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

DEFAULT_SIZE = 256


class Timeline:
    def __init__(self, size: int = DEFAULT_SIZE, on_record: Callable[[], None] | None = None) -> None:
        self._ring: deque[dict] = deque(maxlen=max(1, size))
        self._lock = threading.Lock()
        self._seq = 0
        self._on_record = on_record or (lambda: None)

    def record(self, kind: str, text: str, **fields) -> None:
        """Any thread. `kind`: leader, no-leader, election, became-leader, membership, snapshot, removed."""
        with self._lock:
            self._seq += 1
            self._ring.append({"seq": self._seq, "at": round(time.time(), 3), "kind": kind, "text": text, **fields})
        self._on_record()

    @property
    def last_seq(self) -> int:
        return self._seq

    def since(self, seq: int = 0) -> list[dict]:
        """The events after `seq` still in the ring, oldest first."""
        with self._lock:
            return [dict(e) for e in self._ring if e["seq"] > seq]
