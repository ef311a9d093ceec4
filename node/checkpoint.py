"""Checkpoints as the engine's log compaction: one file format, one restore path.

The engine (node.engine.compaction) turns PySyncObj's three compaction hooks into calls of
this class, all on PySyncObj's tick thread:

* `capture(placeholder, last, prev, members)` when the log is long enough or old enough.
  The tick thread is between two applies, so the state is exactly the state after `last`;
  we freeze its tables in O(1) (`freeze_image`: later writes go to a delta on top) and a
  writer thread encodes the frozen tables into the snapshot store in our format (temporary
  file, fsync, rename, directory fsync), then points `raft.dump` at it. The call returns at
  once: no pause grows with the data, and encoding and disk I/O run off the Raft and HTTP
  paths (they share the GIL with them, which is the cost of not forking). `placeholder` is
  made a symbolic link to the previous snapshot, because the engine renames it over
  `raft.dump` as soon as we return (a hard link would not do: renaming a link onto another
  link of the same file leaves both in place; node/engine/NOTES.md, "Compaction hooks").
* `progress()` reports the writer: WRITING, then (after folding the delta back into the
  tables) DONE (the engine then drops the log up to the snapshot; our journal first fsyncs
  the dump) or FAILED.
* `load(raft.dump)` at start-up and when the leader sent us its snapshot: verify the file,
  load it into the state machine, keep a copy in the store.

`raft.dump` is also what the engine streams to a follower that is too far behind, so the
follower receives our format and installs it through the same `load`.

A failed snapshot (a full disk, node.disk) is retried with exponential back-off, from
RETRY_FIRST_S up to RETRY_MAX_S, not at every tick: while backing off, `capture` only records
the request and `progress` reports WRITING until the retry time, then FAILED once, and the
engine asks again (nothing is frozen meanwhile; the log is kept until a snapshot succeeds).
Lack of space is reported to the DiskMonitor (one line a minute) and a partial file is
removed (snapshots.store); space coming back (the monitor's `on_writable`) ends the back-off.

Start-up (`prepare_startup`, before the engine reads anything) makes sure `raft.dump` is the
newest snapshot that verifies: damaged files are quarantined (renamed `*.broken`) with one
line in the log, and an older snapshot takes over. With no usable snapshot and a journal
that no longer reaches back to index 1, the state cannot be rebuilt locally: the journal is
quarantined too and the node recovers from its peers, refusing stale reads until it has
caught up (it never serves an empty store as if it were the data).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

from node.bridge import Pulse, wait_until
from node.disk import DiskMonitor, is_no_space
from node.metrics import PAUSE_BUCKETS_S, SNAPSHOT_BUCKETS_S, Histogram
from node.replica import Replica
from node.state_machine import freeze_image, from_image
from node.timeline import Timeline
from snapshots import format as fmt
from snapshots.fsutil import fsync_dir
from snapshots.store import SnapshotStore

log = logging.getLogger(__name__)

Entry = tuple[bytes, int, int]  # a log entry: (command, index, term)
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0


def _malloc_trim() -> Callable[[], object]:
    """glibc's malloc_trim(0), or nothing elsewhere (musl, macOS)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


# Hands the heap's free pages back to the system (about 1 ms, without the GIL). glibc keeps what a
# load or a compaction freed (the transient chunks of a snapshot, a whole state replaced) in the
# process otherwise: 8 MB of 10^6 keys' load stayed in RSS.
release_free_memory = _malloc_trim()


class Progress(enum.Enum):
    IDLE = "idle"  # no snapshot being written
    WRITING = "writing"
    DONE = "done"  # reported once, after a snapshot was written
    FAILED = "failed"  # reported once, after a snapshot failed


class Checkpointer:
    def __init__(self, dump_path: str, store: SnapshotStore, self_addr: str, configured: list[str],
                 replica: Replica, alone: bool = False, on_written: Callable[[], None] | None = None,
                 disk: DiskMonitor | None = None, timeline: Timeline | None = None) -> None:
        self.dump_path = dump_path
        self.store = store
        self.self_addr = self_addr
        self.configured = configured  # every member's Raft address, from the command line
        self._replica = replica  # the live state (captured) and where a loaded one is installed
        self.alone = alone  # forced into a one-voter cluster: a snapshot's members are not adopted
        self._on_written = on_written or (lambda: None)  # any thread: a snapshot file came or failed
        self.timeline = timeline or Timeline()  # the console's (node.timeline): snapshots written and loaded
        self._writer: threading.Thread | None = None
        self._writer_ok = False
        self._written = (0, 0, 0)  # the last snapshot written: index, keys, bytes
        self._thaw: Callable[[], None] = lambda: None
        self._started = 0.0
        self._verified: tuple[int, int] | None = None  # (inode, mtime_ns) of a dump verified at start
        self.last_duration_s: float | None = None
        self.last_capture_pause_ms: float | None = None
        self.last_index: int | None = None
        self.snapshots_taken = 0
        self.failures = 0
        self.durations_s = Histogram(SNAPSHOT_BUCKETS_S)  # each snapshot written, capture to file
        self.capture_pauses_s = Histogram(PAUSE_BUCKETS_S)  # how long applies waited for each capture
        self.last_size_bytes: int | None = None
        self.disk = disk or DiskMonitor(os.path.dirname(os.path.abspath(dump_path)))
        self.disk.on_writable(self._end_backoff)
        self._retry_at = 0.0  # monotonic time before which no snapshot is attempted
        self._retry_s = RETRY_FIRST_S  # the next back-off
        self._deferred = False  # capture() came during a back-off: report WRITING, then FAILED
        self._refused = False  # capture() could not even start (no space for the placeholder)

    # -- start-up -----------------------------------------------------------------------------

    def prepare_startup(self, journal_first_index: int) -> tuple[bool, fmt.SnapshotHeader | None]:
        """Make raft.dump the newest valid snapshot. Returns (can the local state be rebuilt,
        the header of the snapshot start-up will load); when it cannot, the caller recovers
        from peers."""
        if removed := self.store.remove_leftovers():
            log.info("removed %d unfinished snapshot file(s): a crash interrupted a snapshot", removed)
        for leftover in (self.dump_path + ".tmp", self.dump_path + ".1.tmp", self.dump_path + ".new"):
            if os.path.lexists(leftover):
                os.unlink(leftover)
        if os.path.lexists(self.dump_path) and (not os.path.exists(self.dump_path)
                                                 or os.path.getsize(self.dump_path) == 0):
            os.unlink(self.dump_path)  # placeholder of a first snapshot that never finished
        if os.path.exists(self.dump_path):
            try:
                header = fmt.verify(self.dump_path)
                st = os.stat(self.dump_path)
                self._verified = (st.st_ino, st.st_mtime_ns)
                self.store.adopt(self.dump_path)
                log.info("snapshot at index %d (term %d, %d keys) found", header.index, header.term, header.key_count)
                return True, header
            except fmt.SnapshotCorrupt as exc:
                self.store.quarantine(self.dump_path, str(exc))
        newest = self.store.newest_valid()
        if newest is not None:
            path, header = newest
            self._point_dump_at(path)
            st = os.stat(self.dump_path)
            self._verified = (st.st_ino, st.st_mtime_ns)
            log.warning("falling back to snapshot at index %d (%s)", header.index, os.path.basename(path))
            return True, header
        return journal_first_index <= 1, None

    def _point_dump_at(self, path: str) -> None:
        tmp = self.dump_path + ".new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.link(path, tmp)
        os.replace(tmp, self.dump_path)
        fsync_dir(os.path.dirname(self.dump_path))

    # -- compaction (tick thread) -------------------------------------------------------------------

    def capture(self, tmp_file: str, last: Entry, prev: Entry, members: list[str]) -> None:
        """Start a snapshot of the state right after entry `last` (whose predecessor is `prev`);
        `members`: every voter the engine replicates to, this node included (sorted).

        During a back-off nothing is captured and no placeholder made: the engine's rename then
        fails, which it takes silently, and `progress` answers until the retry time."""
        if time.monotonic() < self._retry_at:
            self._deferred = True
            return
        try:
            self._make_placeholder(tmp_file)
        except OSError as exc:
            self._refused = True
            self._report_failure(exc, tmp_file)
            return
        state = self._replica.state
        header = fmt.SnapshotHeader(
            index=last[1], term=last[2], key_count=len(state.entries), created_unix=time.time(),
            membership=list(state.voters) or list(members),
            raft_last=[last[1], last[2]], raft_prev=[prev[1], prev[2]],
        )
        # The engine seeds its log with these two entries when it loads the snapshot.
        raft_entries = [[bytes(prev[0]), prev[1], prev[2]], [bytes(last[0]), last[1], last[2]]]
        self._started = time.monotonic()
        capture_started = time.perf_counter()
        with self._replica.lock:  # readers on the loop never see the tables half frozen
            image, thaw = freeze_image(state)  # O(1): later writes go to a delta over frozen tables
        image.meta["raft_entries"] = raft_entries
        pause_s = time.perf_counter() - capture_started
        self.last_capture_pause_ms = pause_s * 1000
        self.capture_pauses_s.observe(pause_s)
        self._thaw = thaw
        self._writer = threading.Thread(target=self._write, args=(header, image, tmp_file),
                                        name="snapshot-writer", daemon=True)
        self._writer_ok = False
        self._writer.start()

    def _make_placeholder(self, tmp_file: str) -> None:
        if os.path.lexists(tmp_file):
            os.unlink(tmp_file)
        current = self.store.list()[:1]
        if current:  # the engine's rename of the placeholder then leaves the dump as it was
            os.symlink(os.path.relpath(current[0], os.path.dirname(tmp_file)), tmp_file)
        else:
            open(tmp_file, "wb").close()  # an empty dump means "no snapshot yet" to prepare_startup

    def _report_failure(self, exc: Exception, path: str) -> None:
        """Any thread: back off before the next attempt; one line a minute for lack of space."""
        self._retry_at = time.monotonic() + self._retry_s
        self._retry_s = min(RETRY_MAX_S, self._retry_s * 2)
        if is_no_space(exc):
            self.disk.failed("snapshot", path)
        else:
            log.error("writing a snapshot failed (next attempt in %.0f s)", self._retry_at - time.monotonic(),
                      exc_info=exc)

    def _end_backoff(self) -> None:
        self._retry_at = 0.0
        self._retry_s = RETRY_FIRST_S

    def _write(self, header: fmt.SnapshotHeader, image, tmp_file: str) -> None:
        """Writer thread: encode the frozen tables, write, fsync, rename, then repoint raft.dump."""
        # While we hold the GIL encoding, the Raft and HTTP threads wait for it; a short switch
        # interval hands it over every 0.5 ms instead of 5 ms.
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)
        try:
            path = self.store.write(header, image)
            self.last_size_bytes = os.path.getsize(path)
            self._written = (header.index, header.key_count, self.last_size_bytes)
            deadline = time.monotonic() + 10
            while os.path.lexists(tmp_file) and time.monotonic() < deadline:
                time.sleep(0.001)  # the engine renames the placeholder right after capture() returns
            self._point_dump_at(path)
            self._writer_ok = True
            self._end_backoff()
            self.disk.succeeded("snapshot")
        except Exception as exc:
            self._report_failure(exc, self.store.folder)
        finally:
            sys.setswitchinterval(switch_interval)
            release_free_memory()  # here, not on the tick thread: the encoding's pieces are freed
            self._on_written()

    def progress(self) -> Progress:
        if self._deferred:
            if time.monotonic() < self._retry_at:
                return Progress.WRITING
            self._deferred = False
            return Progress.FAILED  # the engine asks again at its next tick
        if self._refused:
            self._refused = False
            self.failures += 1
            return Progress.FAILED
        if self._writer is None:
            return Progress.IDLE
        if self._writer.is_alive():
            return Progress.WRITING
        self._writer = None
        with self._replica.lock:
            self._thaw()  # tick thread: fold the writes made meanwhile back into the tables
        self.last_duration_s = time.monotonic() - self._started
        if self._writer_ok:
            self.snapshots_taken += 1
            self.durations_s.observe(self.last_duration_s)
            index, keys, size = self._written
            log.info("snapshot at index %d written: %d keys, %d bytes in %.2f s (capture pause %.1f ms)", index, keys,
                     size, self.last_duration_s, self.last_capture_pause_ms or 0.0,
                     extra={"index": index, "keys": keys, "bytes": size, "seconds": round(self.last_duration_s, 3)})
            self.timeline.record("snapshot", f"snapshot at index {index} written: {keys} keys, {size} bytes",
                                 index=index, keys=keys, bytes=size)
            return Progress.DONE
        self.failures += 1
        return Progress.FAILED

    def load(self, file_name: str) -> tuple[Entry, Entry, list[str]]:
        """Install the snapshot in `file_name`; returns its last entry, the entry before it and
        the voters to adopt with it."""
        verified, self._verified = self._verified, None
        started = time.monotonic()
        try:
            header, meta, entries = fmt.read(file_name, verified=verified)
            state = from_image(meta, entries)
        except fmt.SnapshotCorrupt as exc:
            # Received from the leader damaged: refuse it; the leader sends it again.
            self.store.quarantine(file_name, str(exc))
            raise
        self.store.adopt(file_name)
        self.disk.succeeded("snapshot")  # a snapshot received and kept: the disk took it
        self._on_written()
        prev, last = (tuple(e) for e in _raft_entries(meta, header))
        self._replica.install(state)
        release_free_memory()  # the state it replaced, and the file's chunks
        self.last_index = header.index
        log.info("snapshot at index %d loaded (term %d, %d keys) in %.2f s", header.index, header.term,
                 header.key_count, time.monotonic() - started,
                 extra={"index": header.index, "keys": header.key_count})
        self.timeline.record("snapshot", f"snapshot at index {header.index} loaded ({header.key_count} keys)",
                             index=header.index, keys=header.key_count)
        return (bytes(last[0]), last[1], last[2]), (bytes(prev[0]), prev[1], prev[2]), self._members(header, state)

    def _members(self, header: fmt.SnapshotHeader, state) -> list[str]:
        """The voters the engine adopts with this snapshot: the replicated configuration it
        holds (node.membership), else its header's, else the command line's."""
        if self.alone:
            return [self.self_addr]
        members = list(state.voters) or header.membership
        if self.self_addr not in members and not state.voters:  # restored from another cluster: keep ours
            members = self.configured
        return list(members)

    async def snapshot_at_least(self, index: int, force, written: Pulse, timeout_s: float) -> str:
        """Path of a snapshot that reflects at least log `index`, taking one if needed;
        `written` fires on the loop whenever a snapshot file came (or failed to)."""
        def newest_enough() -> str | None:
            return next((p for p in self.store.list()[:1] if fmt.read_header(p).index >= index), None)

        if (path := newest_enough()) is not None:
            return path
        force()
        path = await wait_until(newest_enough, written, timeout_s)
        if path is None:
            raise TimeoutError(f"no snapshot at index {index} within {timeout_s:g}s")
        return path


def _raft_entries(meta: dict, header: fmt.SnapshotHeader) -> list:
    """The log entries at index-1 and index; a snapshot made elsewhere (an offline restore of a
    file from `GET /v1/snapshot`) has them too, since every snapshot is a compaction snapshot."""
    entries = meta.get("raft_entries")
    if not entries:
        raise fmt.SnapshotCorrupt(f"snapshot at index {header.index} lacks its Raft entries")
    return entries

