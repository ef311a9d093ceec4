"""The folder of checkpoints: atomic writes, retention, quarantine.

Files are named `snap-<index:020d>-<term:010d>.rkvs`, so sorting names sorts by index;
`*.tmp` while being written (removed at start-up), `*.broken` once quarantined (renamed,
never deleted). The store owns the disk protocol; what goes into a file is the business of
`snapshots.format`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable

from snapshots import format as fmt
from snapshots.fsutil import fsync_dir, fsync_file, unlink_in_background

log = logging.getLogger(__name__)

# Where a node keeps its checkpoints inside its data folder (node.settings uses these names).
SNAPSHOT_DIR = "snapshots"
DUMP_FILE = "raft.dump"  # PySyncObj's fullDumpFile: a link to the newest snapshot

NAME = re.compile(r"^snap-(\d{20})-(\d{10})\.rkvs$")
DEFAULT_RETAIN = 3
# A snapshot is handed to the disk every this many bytes while it is written (sync_file_range,
# fsutil.write_back). On ext4 (data=ordered) an fdatasync of the journal commits the file
# system's journal, which first writes out every file's dirty data: a 150 MB snapshot left to
# one fsync at its end made the journal syncs of the writes wait behind it (writes that
# overlapped the snapshot: p99 211 ms, max 404 ms, at 10^6 keys). The smaller the pieces, the
# less a journal sync finds queued before it: at 10^6 keys, write p99 during a snapshot against
# without was 1.8-2.3x with 4 MiB, 1.3-1.8x with 1 MiB, 1.1-1.5x with 256 KiB, and the snapshot
# took 0.3-0.5, 0.4-0.6 and 0.8-1.05 s (BENCHMARKS.md, "Stop 24").
SYNC_EVERY_BYTES = fmt.PIECE_BYTES


class SnapshotStore:
    def __init__(self, folder: str, retain: int = DEFAULT_RETAIN) -> None:
        self.folder = folder
        self.retain = max(1, retain)
        os.makedirs(folder, exist_ok=True)

    def remove_leftovers(self) -> int:
        """Delete half-written files of a crashed writer (never a finished snapshot)."""
        removed = 0
        for name in os.listdir(self.folder):
            if name.endswith(".tmp"):
                os.unlink(os.path.join(self.folder, name))
                removed += 1
        return removed

    @staticmethod
    def name_for(index: int, term: int) -> str:
        return f"snap-{index:020d}-{term:010d}.rkvs"

    def list(self) -> list[str]:
        """Paths of finished snapshots, newest first."""
        names = sorted((n for n in os.listdir(self.folder) if NAME.match(n)), reverse=True)
        return [os.path.join(self.folder, n) for n in names]

    def write(
        self, header: fmt.SnapshotHeader, image: fmt.Payload, progress: Callable[[int], None] | None = None
    ) -> str:
        """Write, fsync, rename, fsync the folder; then drop all but the newest `retain`. A write
        that fails (a full disk) removes its temporary file and raises."""
        final = os.path.join(self.folder, self.name_for(header.index, header.term))
        tmp = final + f".{os.getpid()}.tmp"
        try:
            fmt.write(tmp, header, image, progress, sync_every=SYNC_EVERY_BYTES)
            fsync_file(tmp)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # a full disk leaves no partial snapshot behind
            raise
        os.replace(tmp, final)
        fsync_dir(self.folder)
        self.prune()
        return final

    def adopt(self, path: str, copy: bool = False, progress: Callable[[int], None] | None = None) -> str:
        """Take a verified snapshot written elsewhere into the store: hard-linked (one received
        from the leader), or copied and fsynced (`copy`: a user's file, maybe on another disk).
        Either way it appears under its final name only once complete (tmp, rename, fsync)."""
        header = fmt.read_header(path)
        final = os.path.join(self.folder, self.name_for(header.index, header.term))
        if not os.path.exists(final):
            tmp = final + f".{os.getpid()}.tmp"
            if copy:
                _copy(path, tmp, progress)
                fsync_file(tmp)
            else:
                os.link(path, tmp)
            os.replace(tmp, final)
            fsync_dir(self.folder)
            self.prune()
        return final

    def prune(self) -> None:
        # The oldest snapshot is usually its file's last link: off the caller's thread (the tick
        # thread, when a follower adopts a snapshot from its leader), its blocks are freed.
        for path in self.list()[self.retain:]:
            unlink_in_background(path)

    def quarantine(self, path: str, reason: str) -> str:
        broken = f"{path}.{int(time.time())}.broken"
        os.replace(path, broken)
        fsync_dir(os.path.dirname(path))
        log.error("snapshot %s is unusable: %s; moved aside to %s", path, reason, os.path.basename(broken))
        return broken

    def newest_valid(self) -> tuple[str, fmt.SnapshotHeader] | None:
        """The newest snapshot that verifies; every newer one that does not is quarantined."""
        for path in self.list():
            try:
                return path, fmt.verify(path)
            except fmt.SnapshotCorrupt as exc:
                self.quarantine(path, str(exc))
        return None


def _copy(src: str, dst: str, progress: Callable[[int], None] | None) -> None:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while block := fin.read(fmt.CHUNK_BYTES):
            fout.write(block)
            if progress:
                progress(len(block))
