"""The Raft log on disk, with the syncs PySyncObj 0.3.17 never does.

PySyncObj's own FileJournal is an mmap that is never flushed, and its meta file is renamed
without fsync (node/engine/NOTES.md, "Durability"). `DurableJournal` implements the same
duck-typed `Journal` interface with our own file format and explicit durability; the engine
installs it through PySyncObj's module-level `createJournal` (node.engine.journal_seam).

* `add()` appends the record with one write(); nothing is synced yet.
* `sync()` makes every record added before it began durable with one fdatasync, and advances
  `synced_index`. In a running node it runs on the journal's own sync thread
  (`start_syncing`), woken by every `add()`: the disk works beside PySyncObj's tick thread,
  which keeps receiving, appending and shipping while a sync runs (pipelined group commit).
  Whatever was added while one sync ran is covered by the next one: group commit. After each
  sync that advanced `synced_index` the thread calls `on_synced()`, which wakes the tick thread:
  a follower then sends the acknowledgements that sync covers (node.engine.transport), and the
  leader's next commit computation counts its own copy up to `synced_index` only
  (node.engine.internals.count_own_copy_up_to; NOTES.md, "Durability").
  `sync()` may also be called directly (compaction, close, a full disk): callers serialize.
* term and vote are written with fsync + rename + directory fsync before `setCurrentTerm`
  returns, i.e. before any vote or request that reflects them is sent.
* `deleteEntriesTo` (log compaction) first makes the snapshot PySyncObj just wrote durable,
  then rewrites the kept tail to a new file atomically.

In memory the log is numbers only (index, term and file offset of each record, in arrays) and
the newest commands; older commands are read back from the file when PySyncObj asks for them,
and a slice of the journal is a `LogSlice` read as it is used (NOTES.md, "The log in memory").

A full disk (node.disk): an append that finds no space is cut back off the file, reported to
the `DiskMonitor` and raised as `NoSpaceError`, so PySyncObj's log in memory never holds an
entry the file lacks (the leader counts its own copy toward a commit without asking us). The
same for the term file (`setCurrentTerm` raises: no vote is sent that is not stored). A
compaction that finds no space keeps the whole log. While the monitor says the journal or the
term file cannot be written, the transport and the engine keep PySyncObj from appending,
acknowledging or voting (node.engine.transport), and `onOneSecondTimer` probes by storing the
term file: once that works the journal is tried again.

Record format (little endian): ``u32 length | u32 crc32 | u64 index | u64 term | command``,
where length covers index, term and command, and the crc covers the same bytes. The file
starts with an 16-byte header ``RAFTKVJ1 | u32 format version | u32 reserved``. A torn last
record (a write a crash interrupted, never synced, so never acknowledged) is cut off with one
line. Any other damage (a bad record with valid ones after it) cut synced entries that may
have been acknowledged: the log is cut there too, and `damage` tells the node, which then
must not vote until a leader has given it those entries again (node.membership).

Threading: every method runs on PySyncObj's tick thread, except `sync()` (any thread; the
sync thread's), the read-only accessors `last_index`, `synced_index`, `truncations` and
`entry_term`, which are safe to call from anywhere, and the start-up accessors
(`current_term`, `first_index`, `last_entry`, `start_term`, `close`), used before PySyncObj
runs. `_lock` guards the in-memory bookkeeping (a few assignments, never held across I/O);
`_sync_lock` serializes syncs with each other and with what replaces or closes the file
descriptor (compaction, close). A tail cut (`deleteEntriesFrom`, `clear`) while a sync runs
lowers what that sync may claim: it covers only records written before it began and still
in the log.

Fault injection (tests only, off by default): the environment variable
`RAFTKV_TEST_SYNC_DELAY_MS`, read when a journal is opened, makes every sync sleep that long
before its fdatasync: a slow disk (tests/integration/test_slow_disk.py).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import struct
import threading
import time
import zlib
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from node.disk import DiskMonitor, NoSpaceError, free_bytes, is_no_space
from node.metrics import FSYNC_BUCKETS_S, Histogram
from snapshots.fsutil import close_in_background, fsync_dir, fsync_file, write_atomic

log = logging.getLogger(__name__)

MAGIC = b"RAFTKVJ1"
FORMAT_VERSION = 1
HEADER = struct.Struct("<8sII")
RECORD_HEAD = struct.Struct("<IIQQ")  # length, crc, index, term
INDEX_TERM = struct.Struct("<QQ")
LOW_SPACE_BYTES = 64 * 1024  # below this the journal probes the disk once a second
SYNC_DELAY_ENV = "RAFTKV_TEST_SYNC_DELAY_MS"  # fault injection: a slow disk (module docstring)
SYNC_RETRY_S = 1.0  # the sync thread tries a failed sync again after this long (or the next add)

Entry = tuple[bytes, int, int]  # (command, index, term), PySyncObj's shape
# The newest entries' commands are kept in memory (the leader ships them, every node applies
# them right after they arrive); older ones are read back from the file (NOTES.md, "The log in
# memory"). Bounded by both a count and bytes.
TAIL_CACHE_ENTRIES = 4096
TAIL_CACHE_BYTES = 8 << 20
COPY_CHUNK_BYTES = 1 << 20  # compaction copies the kept tail in pieces this big


class JournalError(Exception):
    """The journal cannot be opened (wrong file, unreadable): the node must not start."""


@dataclass(frozen=True)
class JournalDamage:
    """Synced entries were lost: the log was cut after `kept_index`, and it had reached at
    least `high_index` (of `high_term`), which this node may have acknowledged."""

    reason: str
    kept_index: int
    high_index: int
    high_term: int


def _valid_records_after(data: bytes, pos: int, after: tuple[int, int],
                         limit: int = 64 << 20) -> tuple[list[tuple[int, int]], bool]:
    """(index, term) of the records that still verify after a bad one at `pos`: first by
    following the bad record's own length (a flipped byte in its body), else by scanning
    byte by byte for a record whose length and checksum hold (bounded); and whether the scan
    gave up before the end of its window.

    A candidate's checksum is computed only if its index and term can follow `after` (the last
    good record's (index, term)) and its length fits, and all candidates together may checksum
    at most twice the window: damage full of plausible lengths made this minutes of CRCs. A
    scan that gives up is counted as damage, never as a torn tail (the cautious answer)."""
    found: list[tuple[int, int]] = []
    start = pos + 1
    if pos + RECORD_HEAD.size <= len(data):
        length = RECORD_HEAD.unpack_from(data, pos)[0]
        if 16 <= length and pos + 8 + length < len(data):
            start = pos + 8 + length
    end = min(len(data), start + limit)
    budget = 2 * (end - start) + (1 << 20)  # bytes checksummed, in all
    last_index, last_term = after
    max_index = last_index + len(data) // RECORD_HEAD.size + 1  # a record takes 24 bytes at least
    p = start
    while p + RECORD_HEAD.size <= end:
        length, crc, index, term = RECORD_HEAD.unpack_from(data, p)
        body_end = p + 8 + length
        if 16 <= length and body_end <= len(data) and last_index < index <= max_index and term >= last_term:
            budget -= length
            if budget < 0:
                return found, True
            if zlib.crc32(memoryview(data)[p + 8 : body_end]) == crc:
                found.append((index, term))
                last_index, last_term = index, term
                p = body_end
                continue
        p += 1
    return found, False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _is_count(value) -> bool:
    return type(value) is int and value >= 0


def _sync_delay_s() -> float:
    raw = os.environ.get(SYNC_DELAY_ENV, "")
    try:
        return max(0.0, float(raw) / 1000) if raw else 0.0
    except ValueError:
        log.warning("%s=%r is not a number of milliseconds; ignored", SYNC_DELAY_ENV, raw)
        return 0.0


class LogSlice(Sequence):
    """Consecutive entries of the journal, read when indexed or iterated (what a slice of the
    journal returns: PySyncObj slices the log from an index to its end to ship or compare a few
    entries). A slice of a slice is a list: PySyncObj takes one only to cut a batch it has just
    measured, or the conflicting tail a follower drops."""

    __slots__ = ("_journal", "_first", "_count")

    def __init__(self, journal: DurableJournal, first: int, count: int) -> None:
        self._journal, self._first, self._count = journal, first, count  # first: a Raft index

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, item):
        if isinstance(item, slice):
            return [self._journal.entry(self._first + i) for i in range(*item.indices(self._count))]
        if item < 0:
            item += self._count
        if not 0 <= item < self._count:
            raise IndexError("log slice index out of range")
        return self._journal.entry(self._first + item)

    def __iter__(self) -> Iterator[Entry]:
        for i in range(self._count):
            yield self._journal.entry(self._first + i)


class DurableJournal:
    def __init__(
        self,
        path: str,
        dump_path: str | None = None,
        on_sync: Callable[[int, float], None] | None = None,
        disk: DiskMonitor | None = None,
    ) -> None:
        self.path = path
        self.disk = disk or DiskMonitor(os.path.dirname(os.path.abspath(path)))
        self.meta_path = path + ".meta"
        self.dump_path = dump_path
        self._on_sync = on_sync  # (synced_index, monotonic time) after each sync: the durability observer
        # The log held as numbers, one per entry in each array (24 bytes an entry); the commands
        # stay in the file, the newest few in `_tail` (NOTES.md, "The log in memory").
        self._indexes = array("Q")
        self._terms = array("Q")
        self._offsets = array("Q")  # file offset where each entry's record starts
        self._tail: dict[int, bytes] = {}  # Raft index -> command, the newest entries
        self._tail_bytes = 0
        self._head: tuple[int, bytes] | None = None  # the first entry's: PySyncObj reads log[0] many times a tick
        self._lock = threading.Lock()  # the bookkeeping below, between the tick and sync threads
        self._sync_lock = threading.RLock()  # one sync at a time; no fd swap or close during one
        self._dirty = False
        self._synced_index = 0
        self._synced_offset = HEADER.size
        self._covering: tuple[int, int] | None = None  # (index, offset) the running sync covers
        self.truncations = 0  # tail cuts so far: an acknowledgement made before one is void
        self._sync_delay_s = _sync_delay_s()
        self._wake = threading.Event()  # set by add(): the sync thread has work
        self._stopping = False
        self._sync_thread: threading.Thread | None = None
        self._on_synced: Callable[[], None] | None = None
        self._meta = self._read_meta()
        self._meta_dirty = False
        self._cleared: list[Entry] | None = None  # the log just replaced by a snapshot, see add()
        self.damage: JournalDamage | None = None  # set when loading cut synced entries
        # For the metrics (node.metrics): plain numbers, updated on the tick thread.
        self.entries_appended = 0
        self.bytes_written = 0
        self.fsync_seconds = Histogram(FSYNC_BUCKETS_S)
        self._fd = self._open_and_load()

    # -- loading ------------------------------------------------------------------------------

    def _open_and_load(self) -> int:
        existed = os.path.exists(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not existed or os.fstat(fd).st_size == 0:
            os.write(fd, HEADER.pack(MAGIC, FORMAT_VERSION, 0))
            os.fsync(fd)
            fsync_dir(os.path.dirname(os.path.abspath(self.path)))
            self._end = HEADER.size
            return fd
        with open(self.path, "rb") as f:
            data = f.read()
        if len(data) < HEADER.size or data[:8] != MAGIC:
            os.close(fd)
            raise JournalError(f"{self.path} is not a raftkv journal (bad header)")
        _, version, _ = HEADER.unpack_from(data, 0)
        if version > FORMAT_VERSION:
            os.close(fd)
            raise JournalError(f"{self.path} has journal format {version}, newer than this raftkv")
        pos = HEADER.size
        while pos < len(data):
            problem = None
            if pos + RECORD_HEAD.size > len(data):
                problem = "torn record header"
            else:
                length, crc, index, term = RECORD_HEAD.unpack_from(data, pos)
                body_end = pos + 8 + length
                if length < 16 or body_end > len(data):
                    problem = "torn record"
                elif zlib.crc32(memoryview(data)[pos + 8 : body_end]) != crc:
                    problem = "checksum mismatch"
                elif self._indexes and index != self._indexes[-1] + 1:
                    problem = f"index {index} does not follow {self._indexes[-1]}"
            if problem:
                self._cut_damaged_tail(fd, data, pos, problem)
                break
            self._offsets.append(pos)
            self._indexes.append(index)
            self._terms.append(term)
            pos = body_end
        self._end = pos
        self._synced_index = self.last_index
        self._synced_offset = pos
        return fd

    def _cut_damaged_tail(self, fd: int, data: bytes, pos: int, problem: str) -> None:
        """Cut the log at the first bad record, keeping the rest in a `.broken` file.

        A torn last record was never synced, so never acknowledged: cutting it is what a crash
        mid-write asks for. Anything else (a bad record with valid records after it, a gap in
        the indexes) damaged entries that were synced and may have been acknowledged: the cut
        is recorded in `damage`, and the node must not vote until it holds them again.
        """
        kept = (self._indexes[-1], self._terms[-1]) if self._indexes else (0, 0)
        later, gave_up = _valid_records_after(data, pos, kept)
        torn = not later and not gave_up and problem in ("torn record header", "torn record", "checksum mismatch")
        broken = f"{self.path}.{int(time.time())}.tail.broken"
        with open(broken, "wb") as f:
            f.write(data[pos:])
            f.flush()
            os.fsync(f.fileno())
        if torn:
            log.warning("journal %s: %s in the last record at byte %d (a write a crash interrupted, never "
                        "acknowledged); %d bytes moved to %s", self.path, problem, pos, len(data) - pos,
                        os.path.basename(broken))
        else:
            last = kept[0]
            high = max(later, default=kept)
            self.damage = JournalDamage(f"{problem} at byte {pos}", last, high[0], high[1])
            log.error("journal %s damaged: %s, %d valid records after it; the log is cut after index %d (the rest "
                      "kept in %s) and this node will not vote until it holds index %d again from a leader",
                      self.path, self.damage.reason, len(later), last, os.path.basename(broken), high[0])
        os.ftruncate(fd, pos)
        os.fsync(fd)

    def _read_meta(self) -> dict:
        try:
            with open(self.meta_path, "rb") as f:
                meta = json.loads(f.read())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise JournalError(f"{self.meta_path} is unreadable: {exc}") from None
        # JSON, but not what _store_meta writes: refused here rather than failing later in Raft.
        wrong = "not a JSON object" if not isinstance(meta, dict) else ", ".join(
            [name for name in ("term", "commit_index") if name in meta and not _is_count(meta[name])]
            + (["voted_for"] if meta.get("voted_for") is not None and not isinstance(meta["voted_for"], str) else []))
        if wrong:
            raise JournalError(f"{self.meta_path} is unreadable: wrong type ({wrong})")
        return meta

    def _store_meta(self) -> None:
        try:
            write_atomic(self.meta_path, json.dumps(self._meta, sort_keys=True).encode())
        except OSError as exc:
            self._meta_dirty = True  # stored by the next probe (onOneSecondTimer)
            if is_no_space(exc):
                self.disk.failed("term", self.meta_path)
                raise NoSpaceError(exc.errno, f"cannot store the term: {exc.strerror}", self.meta_path) from None
            raise
        self._meta_dirty = False
        self.disk.succeeded("term")

    # -- PySyncObj's Journal interface (tick thread) --------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        self._append(command, idx, term)
        if self._cleared is not None and len(self._indexes) == 2:
            self._keep_tail_after_snapshot()
        self._wake.set()  # the sync thread starts at once; more adds meanwhile join the next sync

    def _keep_tail_after_snapshot(self) -> None:
        """PySyncObj loads a snapshot as clear() + add(prev) + add(last), discarding the whole
        log. Raft keeps the entries after the snapshot's last entry when the log holds that
        entry (same index and term). Without this, a crash between a snapshot's rename and
        the journal's compaction would throw away every entry after the snapshot on restart
        (NOTES.md, "Snapshot loads")."""
        cleared, self._cleared = self._cleared, None
        if cleared is None:
            return
        last = self.last_entry
        assert last is not None
        for pos, entry in enumerate(cleared):
            if entry[1] == last[1] and entry[2] == last[2]:
                for kept in cleared[pos + 1 :]:
                    self._append(*kept)
                return

    def _append(self, command: bytes, idx: int, term: int) -> None:
        command = bytes(command)
        body = INDEX_TERM.pack(idx, term) + command
        record = struct.pack("<II", len(body), zlib.crc32(body)) + body
        self._write_record(record)
        with self._lock:
            self._offsets.append(self._end)
            self._indexes.append(idx)
            self._terms.append(term)
            self._end += len(record)
            self._cache(idx, command)
            self._dirty = True
            self.entries_appended += 1
            self.bytes_written += len(record)

    def _write_record(self, record: bytes) -> None:
        """Write one record at the end, all of it, or nothing: NoSpaceError when it does not fit."""
        try:
            written = os.pwrite(self._fd, record, self._end)
            if written != len(record):  # a short write: the file system ran out of space midway
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._end)  # no torn record left behind (shrinking needs no space)
            if not is_no_space(exc):
                raise
            self.disk.failed("journal", self.path)
            self.sync()  # what was written before it is durable, whatever PySyncObj does next
            raise NoSpaceError(exc.errno, f"cannot append to the journal: {exc.strerror}", self.path) from None
        self.disk.succeeded("journal")

    def clear(self) -> None:
        # Called when PySyncObj replaces the log by a snapshot it just loaded: make that
        # snapshot durable first, or a power loss could leave neither.
        self._sync_dump()
        self._cleared = list(self)  # read back before the file is cut (rare: a snapshot replacing the log)
        with self._lock:
            del self._indexes[:], self._terms[:], self._offsets[:]
            self._head = None
            self._tail.clear()
            self._tail_bytes = 0
            self._end = HEADER.size
            os.ftruncate(self._fd, self._end)
            self._dirty = True
            self._synced_index = 0
            self._synced_offset = self._end
            self._cut_covering()
        self._wake.set()  # the cut itself is made durable too

    def __getitem__(self, item):
        """The entry at list position `item` as PySyncObj's (command, index, term); a slice is a
        `LogSlice`, read as it is used."""
        n = len(self._indexes)
        if isinstance(item, slice):
            start, stop, step = item.indices(n)
            if step != 1:
                return [self._entry_at(pos) for pos in range(start, stop, step)]
            return LogSlice(self, self._indexes[start] if start < n else 0, max(0, stop - start))
        if item < 0:
            item += n
        if not 0 <= item < n:
            raise IndexError("journal index out of range")
        return self._entry_at(item)

    def __iter__(self) -> Iterator[Entry]:
        for pos in range(len(self._indexes)):
            yield self._entry_at(pos)

    def __len__(self) -> int:
        return len(self._indexes)

    def entry(self, index: int) -> Entry:
        """The entry of Raft `index` (tick thread); IndexError when the log does not hold it."""
        indexes = self._indexes
        pos = index - indexes[0] if indexes else -1
        if not (0 <= pos < len(indexes) and indexes[pos] == index):
            raise IndexError(f"the journal does not hold index {index}")
        return self._entry_at(pos)

    def _entry_at(self, pos: int) -> Entry:
        index = self._indexes[pos]
        command = self._tail.get(index)
        if command is None and pos == 0 and self._head is not None and self._head[0] == index:
            command = self._head[1]
        if command is None:  # an older entry: read back (from the page cache, usually)
            start = self._offsets[pos] + RECORD_HEAD.size
            end = self._offsets[pos + 1] if pos + 1 < len(self._offsets) else self._end
            command = os.pread(self._fd, end - start, start)
            if len(command) != end - start:
                raise JournalError(f"{self.path}: the record of index {index} was cut short under us")
            if pos == 0:
                self._head = (index, command)
        return command, index, self._terms[pos]

    def _cache(self, index: int, command: bytes) -> None:
        """Under `_lock`: keep a new entry's command; forget the oldest beyond the bounds."""
        tail = self._tail
        tail[index] = command
        self._tail_bytes += len(command)
        while len(tail) > TAIL_CACHE_ENTRIES or (self._tail_bytes > TAIL_CACHE_BYTES and len(tail) > 1):
            self._tail_bytes -= len(tail.pop(next(iter(tail))))

    def _forget_cached(self, keep) -> None:
        """Under `_lock`: drop the cached commands whose index `keep` refuses."""
        for index in [i for i in self._tail if not keep(i)]:
            self._tail_bytes -= len(self._tail.pop(index))

    def deleteEntriesFrom(self, entry_from: int) -> None:  # noqa: N802 - PySyncObj's name
        """Drop the entries at list positions >= entry_from (a Raft log conflict)."""
        if entry_from >= len(self._indexes):
            return
        with self._lock:
            self._end = self._offsets[entry_from]
            cut = self._indexes[entry_from]
            del self._indexes[entry_from:], self._terms[entry_from:], self._offsets[entry_from:]
            if entry_from == 0:
                self._head = None
            self._forget_cached(lambda i: i < cut)
            os.ftruncate(self._fd, self._end)
            self._dirty = True
            self._synced_index = min(self._synced_index, self.last_index)
            self._synced_offset = min(self._synced_offset, self._end)
            self._cut_covering()
        self._wake.set()  # the cut itself is made durable too

    def deleteEntriesTo(self, entry_to: int) -> None:  # noqa: N802 - PySyncObj's name
        """Drop the entries at list positions < entry_to: they are covered by the snapshot."""
        with self._sync_lock:  # no sync runs on the descriptor this closes
            self._delete_entries_to(entry_to)

    def _delete_entries_to(self, entry_to: int) -> None:
        self._sync_dump()
        self.sync()
        # The kept records are copied as they are (they name their own index and term), in pieces.
        start = self._offsets[entry_to] if entry_to < len(self._offsets) else self._end
        shift = start - HEADER.size
        offsets = array("Q", (offset - shift for offset in self._offsets[entry_to:]))
        end = self._end - shift
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, HEADER.pack(MAGIC, FORMAT_VERSION, 0))
            for pos in range(start, self._end, COPY_CHUNK_BYTES):
                piece = os.pread(self._fd, min(COPY_CHUNK_BYTES, self._end - pos), pos)
                if not piece:
                    raise OSError(errno.EIO, f"{self.path} ends before byte {self._end}")
                _write_all(fd, piece)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if not is_no_space(exc):
                raise
            # The log stays whole: longer than needed, never shorter. PySyncObj reads positions
            # from the first entry it finds, so the entries it meant to drop simply remain.
            self.disk.failed("journal", tmp)
            return
        os.replace(tmp, self.path)
        fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        with self._lock:
            replaced, self._fd = self._fd, fd
            self._indexes = self._indexes[entry_to:]
            self._terms = self._terms[entry_to:]
            self._offsets = offsets
            if self._indexes:
                first = self._indexes[0]
                self._forget_cached(lambda i: i >= first)
            else:
                self._tail.clear()
                self._tail_bytes = 0
            self._end = end
            self._synced_offset = end  # the new file holds exactly the kept entries, fsynced
            if self._indexes:
                self._synced_index = self._indexes[-1]
            self._dirty = False
        close_in_background(replaced)  # the old file's last reference: its blocks are freed in close(2)

    def _destroy(self) -> None:  # PySyncObj's name for close()
        self.close()

    def flush(self) -> None:
        self.sync()

    def setRaftCommitIndex(self, commit_index: int) -> None:  # noqa: N802
        if self._meta.get("commit_index") != commit_index:
            self._meta["commit_index"] = commit_index
            self._meta_dirty = True

    def getRaftCommitIndex(self) -> int:  # noqa: N802
        # The stored commit index is a hint saved once a second; never beyond our own log.
        return max(1, min(self._meta.get("commit_index", 1), self.last_index or 1))

    def setCurrentTerm(self, term: int, voted_for: str | None) -> None:  # noqa: N802
        before = dict(self._meta)
        self._meta["term"] = term
        self._meta["voted_for"] = voted_for
        try:
            self._store_meta()  # durable before the vote or request that depends on it is sent
        except NoSpaceError:
            self._meta = before  # what the file still says
            raise

    def getCurrentTerm(self) -> int:  # noqa: N802
        return self._meta.get("term", 0)

    def getVotedForNodeId(self):  # noqa: N802
        return self._meta.get("voted_for")

    def onOneSecondTimer(self) -> None:  # noqa: N802
        # The probe is storing the small term file again. While the disk is nearly full it tells a
        # leader that its disk is full before a write meets it. Once full, the journal is tried
        # again only with LOW_SPACE_BYTES free (a probe that fits is not yet room for entries:
        # freeing a failed snapshot's pages made the state flap) and a probe that succeeds.
        free = free_bytes(self.disk.folder)
        low = free is not None and free < LOW_SPACE_BYTES
        full = self.disk.refuses_entries
        if full and low:
            return
        probing = full or low
        if self._meta_dirty or probing:
            try:
                self._store_meta()
            except NoSpaceError:
                return  # reported by the monitor, tried again in a second
            if probing:
                self.disk.succeeded("journal")  # space came back: the next append tries the journal

    # -- start-up (before PySyncObj runs) ----------------------------------------------------------

    @property
    def current_term(self) -> int:
        return self.getCurrentTerm()

    def start_term(self, term: int) -> None:
        """Make `term` current, with no vote cast in it yet (stored before this returns)."""
        self.setCurrentTerm(term, None)

    @property
    def first_index(self) -> int | None:
        indexes = self._indexes
        return indexes[0] if indexes else None

    @property
    def last_entry(self) -> Entry | None:
        return self[-1] if self._indexes else None

    @property
    def commit_index_hint(self) -> int:
        """The commit index stored before the last stop (at least 1, never beyond the log)."""
        return self.getRaftCommitIndex()

    def close(self) -> None:
        """Stop the sync thread, sync, store the term and vote file if it changed, close the file."""
        self.stop_syncing()
        self.sync()
        if self._meta_dirty:
            with contextlib.suppress(NoSpaceError):  # reported; the term of the last good store stays
                self._store_meta()
        with self._sync_lock:
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = -1

    # -- durability ---------------------------------------------------------------------------

    def sync(self) -> bool:
        """Make every record added before this call durable (one fdatasync for all of them);
        False when the file system had no space to keep them (reported to the monitor; still
        dirty, nothing more counts as synced). Any thread; syncs run one at a time."""
        with self._sync_lock:
            with self._lock:
                if not self._dirty or self._fd < 0:
                    return True
                fd = self._fd
                self._dirty = False  # an add() from now on makes it dirty again: the next sync's
                self._covering = (self.last_index, self._end)
            started = time.perf_counter()
            try:
                if self._sync_delay_s:
                    time.sleep(self._sync_delay_s)  # fault injection: a slow disk (module docstring)
                os.fdatasync(fd)
            except OSError as exc:
                with self._lock:
                    self._dirty, self._covering = True, None
                if not is_no_space(exc):
                    raise
                self.disk.failed("journal", self.path)
                return False
            self.fsync_seconds.observe(time.perf_counter() - started)
            with self._lock:
                covered, self._covering = self._covering, None  # lowered by a tail cut meanwhile
                synced = max(self._synced_index, covered[0]) if covered is not None else self._synced_index
                advanced = synced > self._synced_index
                if self._on_sync is not None:  # told before anyone can act on the new synced index
                    self._on_sync(synced, time.monotonic())
                if covered is not None:
                    self._synced_index = synced
                    self._synced_offset = max(self._synced_offset, covered[1])
        if advanced and self._on_synced is not None:
            self._on_synced()
        return True

    def _cut_covering(self) -> None:
        """Under `_lock`, after a tail cut: a sync running now covers nothing past the cut (the
        records written after it began are not its), and acknowledgements made before are void."""
        self.truncations += 1
        if self._covering is not None:
            self._covering = (min(self._covering[0], self.last_index), min(self._covering[1], self._end))

    # -- the sync thread ----------------------------------------------------------------------

    def start_syncing(self, on_synced: Callable[[], None] | None = None) -> None:
        """Sync in a thread of our own from now on, each time records were added; `on_synced()`
        runs on that thread after every sync that advanced `synced_index` (it must be fast and
        not raise: the engine wakes PySyncObj's tick thread with it)."""
        if self._sync_thread is not None:
            return
        self._on_synced = on_synced
        self._stopping = False
        self._sync_thread = threading.Thread(target=self._sync_loop, name="raftkv-journal-sync", daemon=True)
        self._sync_thread.start()
        if self._dirty:
            self._wake.set()

    def stop_syncing(self) -> None:
        """Stop the sync thread (after the sync it may be running); idempotent."""
        thread, self._sync_thread = self._sync_thread, None
        if thread is None:
            return
        self._stopping = True
        self._wake.set()
        if thread is not threading.current_thread():
            thread.join()

    def _sync_loop(self) -> None:
        retry_in: float | None = None
        while True:
            self._wake.wait(retry_in)
            self._wake.clear()  # before the sync: an add() during it wakes us again
            if self._stopping:
                return
            try:
                ok = self.sync()
            except Exception:  # an I/O error other than a full disk: nothing more counts as synced
                log.exception("journal %s: sync failed; trying again in %.0f s", self.path, SYNC_RETRY_S)
                ok = False
            retry_in = None if ok else SYNC_RETRY_S

    def _sync_dump(self) -> None:
        if self.dump_path and os.path.exists(self.dump_path):
            fsync_file(self.dump_path)
            fsync_dir(os.path.dirname(os.path.abspath(self.dump_path)))

    @property
    def full(self) -> bool:
        """The journal or the term file cannot be written now: append, acknowledge, vote nothing."""
        return self.disk.refuses_entries

    @property
    def syncing(self) -> bool:
        """A sync thread runs (`start_syncing`): nobody else needs to call `sync()` to make entries durable."""
        return self._sync_thread is not None

    @property
    def dirty(self) -> bool:
        return self._dirty

    @property
    def last_index(self) -> int:
        try:
            return self._indexes[-1]
        except IndexError:  # empty (or emptied by the tick thread meanwhile)
            return 0

    @property
    def synced_index(self) -> int:
        return self._synced_index

    @property
    def synced_offset(self) -> int:
        """File size that a power loss right now would leave at least (a record boundary)."""
        return self._synced_offset

    def entry_term(self, index: int) -> int | None:
        """Term of the entry at Raft `index`, or None when we do not hold it."""
        with self._lock:  # any thread: a compaction replaces both arrays under it
            indexes = self._indexes
            pos = index - indexes[0] if indexes else -1
            if 0 <= pos < len(indexes) and indexes[pos] == index:
                return self._terms[pos]
        return None
