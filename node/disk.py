"""Whether this node's disk takes durable writes, as its writers found it (etcd's NOSPACE alarm).

The journal (appends, syncs, compaction), the term file (and the membership file, counted as
`term`: both are the node's small metadata) and the snapshot writer (and a snapshot received
from the leader) report each durable write that failed for lack of space (ENOSPC, EDQUOT, or a
short write) with `failed`, and each one that succeeded with `succeeded`. From those this
module keeps:

* `full`: some kind's last durable write failed for lack of space (the `raftkv_disk_full`
  gauge, the autopilot alarm, `/readyz`);
* `refuses_entries`: the journal or the term file cannot be written, so this node must append,
  acknowledge and vote for nothing (node.engine.transport, node.engine.engine) and its writes
  are refused at once with `reason()` (api: 507);
* one warning per kind per `warn_every_s` (not per failure), with the path and the free bytes,
  and one info line once every kind is writable again.

Nothing here retries: the journal probes once a second while it is full
(DurableJournal.onOneSecondTimer), and the snapshot writer backs off (node.checkpoint).

Threading: called from the tick thread, the snapshot writer and the event loop; one lock.
The metrics live on prometheus_client's default registry, once per process (a process runs
one node; tests that build several nodes in one process share them).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

KINDS = ("journal", "snapshot", "term")
ENTRY_KINDS = ("journal", "term")  # what a node needs to append, acknowledge and vote
WARN_EVERY_S = 60.0

DISK_FULL = Gauge("raftkv_disk_full", "1 while this node's last durable write failed for lack of space")
WRITE_FAILURES = Counter("raftkv_disk_write_failures_total",
                         "Durable writes that failed for lack of space, by what was written", ["kind"])
for _kind in KINDS:
    WRITE_FAILURES.labels(kind=_kind)  # every series present from the start, at 0


class NoSpaceError(OSError):
    """A durable write failed for lack of space; nothing of it is kept (the file was cut back)."""


def is_no_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def free_bytes(path: str) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class DiskMonitor:
    def __init__(self, folder: str, node_name: str = "this node", warn_every_s: float = WARN_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.folder = folder
        self.node_name = node_name
        self._warn_every_s = warn_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failing: dict[str, str] = {}  # kind -> path of its last failed write
        self._last_warned: dict[str, float] = {}
        self._left_out: dict[str, int] = {}  # failures not logged since the kind's last line
        self._on_writable: list[Callable[[], None]] = []
        self._on_refusing: list[Callable[[], None]] = []

    def on_writable(self, callback: Callable[[], None]) -> None:
        """`callback()` (on the reporting thread) whenever a kind that was failing succeeds."""
        self._on_writable.append(callback)

    def on_refusing(self, callback: Callable[[], None]) -> None:
        """`callback()` (on the reporting thread) when the node starts refusing entries."""
        self._on_refusing.append(callback)

    def failed(self, kind: str, path: str) -> None:
        WRITE_FAILURES.labels(kind=kind).inc()
        now = self._clock()
        refusing_before = self.refuses_entries
        if kind in ENTRY_KINDS and not refusing_before:
            for callback in self._on_refusing:
                callback()
        with self._lock:
            self._failing[kind] = path
            DISK_FULL.set(1)
            last = self._last_warned.get(kind)
            if last is not None and now - last < self._warn_every_s:
                self._left_out[kind] = self._left_out.get(kind, 0) + 1
                return
            self._last_warned[kind] = now
            left_out, self._left_out[kind] = self._left_out.get(kind, 0), 0
        more = f"; {left_out} more failures since the last such line" if left_out else ""
        log.warning("disk full: %s write to %s failed for lack of space (%s bytes free)%s", kind, path,
                    _count(free_bytes(self.folder)), more)

    def succeeded(self, kind: str) -> None:
        if kind not in self._failing:  # the common case, without the lock
            return
        with self._lock:
            if self._failing.pop(kind, None) is None:
                return
            cleared = not self._failing
            if cleared:
                DISK_FULL.set(0)
                self._last_warned.clear()
        if cleared:
            log.info("disk writable again: %s (%s bytes free)", self.folder, _count(free_bytes(self.folder)))
        for callback in self._on_writable:
            callback()

    @property
    def full(self) -> bool:
        return bool(self._failing)

    @property
    def refuses_entries(self) -> bool:
        failing = self._failing
        return any(kind in failing for kind in ENTRY_KINDS)

    def failing(self) -> list[str]:
        with self._lock:
            return sorted(self._failing)

    def reason(self) -> str:
        """One line: which node, "disk full", where and how much is free."""
        with self._lock:
            paths = sorted(set(self._failing.values()))
        where = os.path.dirname(paths[0]) if paths else self.folder
        return f"{self.node_name}: disk full ({where}, {_count(free_bytes(self.folder))} bytes free)"


def _count(value: int | None) -> str:
    return "unknown" if value is None else f"{value:,}"
