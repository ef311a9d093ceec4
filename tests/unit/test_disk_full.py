"""A full disk, one layer at a time (node/disk.py, the journal, the snapshot writer).

The monitor is tested alone with a fake clock and read through prometheus_client's default
registry. The journal and the checkpointer write to a real small tmpfs that the test mounts
(root only): a full disk is a real ENOSPC, not a fake.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time

import pytest
from prometheus_client import REGISTRY, generate_latest

from node.bridge import LoopBridge
from node.checkpoint import Checkpointer, Progress
from node.codec import SetOp, encode
from node.disk import DiskMonitor, NoSpaceError
from node.engine.journal import DurableJournal
from node.replica import Replica
from node.watch import WatchHub
from snapshots.store import SnapshotStore


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_monitor_gauge_counter_and_one_line_a_minute_per_kind(tmp_path, caplog):
    now = [100.0]
    disk = DiskMonitor(str(tmp_path), "node n1", clock=lambda: now[0])
    before = {k: sample("raftkv_disk_write_failures_total", kind=k) for k in ("journal", "snapshot", "term")}
    caplog.set_level(logging.INFO, logger="node.disk")
    refusing, writable = [], []
    disk.on_refusing(lambda: refusing.append(disk.reason()))
    disk.on_writable(lambda: writable.append(disk.full))
    for _ in range(50):
        disk.failed("journal", str(tmp_path / "raft.journal"))
    disk.failed("snapshot", str(tmp_path / "snapshots"))
    assert sample("raftkv_disk_full") == 1.0 and disk.full and disk.refuses_entries
    assert len(refusing) == 1 and refusing[0].startswith("node n1: disk full")  # once, as it began
    assert sample("raftkv_disk_write_failures_total", kind="journal") == before["journal"] + 50
    assert sample("raftkv_disk_write_failures_total", kind="snapshot") == before["snapshot"] + 1
    assert sample("raftkv_disk_write_failures_total", kind="term") == before["term"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "journal write to" in warnings[0] and "bytes free" in warnings[0]
    now[0] += 61
    disk.failed("journal", str(tmp_path / "raft.journal"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and "49 more failures since the last such line" in warnings[2]
    assert disk.reason().startswith(f"node n1: disk full ({tmp_path}, ")
    disk.succeeded("journal")
    assert not disk.refuses_entries and disk.full and sample("raftkv_disk_full") == 1.0  # the snapshot still
    disk.succeeded("snapshot")
    assert not disk.full and sample("raftkv_disk_full") == 0.0 and writable == [True, False]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO][0].startswith("disk writable again")
    text = generate_latest(REGISTRY).decode()
    assert "raftkv_disk_full 0.0" in text and 'raftkv_disk_write_failures_total{kind="term"}' in text


@pytest.fixture
def tmpfs(tmp_path):
    """A 512 KiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path = str(tmp_path / "small")
    os.makedirs(path)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", path], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", path], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", path], capture_output=True)


def fill_leaving(folder: str, free_bytes: int, name: str = "filler") -> str:
    """A filler file that leaves about `free_bytes` free (whole pages); returns its path."""
    path = os.path.join(folder, name)
    st = os.statvfs(folder)
    size = max(0, st.f_bavail * st.f_frsize - free_bytes)
    with open(path, "wb") as f:
        f.write(b"\0" * size)
    return path


def test_journal_append_without_space_leaves_no_torn_record_and_works_again_once_space_returns(tmpfs):
    path = os.path.join(tmpfs, "raft.journal")
    disk = DiskMonitor(tmpfs, "node n1")
    j = DurableJournal(path, disk=disk)
    j.setCurrentTerm(1, None)
    for i in range(1, 11):
        j.add(f"cmd{i}".encode(), i, 1)
    j.sync()
    filler = fill_leaving(tmpfs, 8192)
    size = os.path.getsize(path)
    with pytest.raises(NoSpaceError):  # a record that starts to fit and then does not: a short write
        j.add(b"x" * 64 * 1024, 11, 1)
    assert os.path.getsize(path) == size and len(j) == 10 and j.full and disk.full
    rest = fill_leaving(tmpfs, 0, "rest")
    with pytest.raises(NoSpaceError):  # term and vote: not stored, not kept
        j.setCurrentTerm(2, "127.0.0.1:7002")
    assert j.getCurrentTerm() == 1 and j.getVotedForNodeId() is None
    assert not os.path.exists(j.meta_path + ".tmp")
    j.onOneSecondTimer()  # a probe with next to nothing free: still full
    assert j.full
    os.unlink(filler)
    os.unlink(rest)
    j.onOneSecondTimer()  # the probe stores the term file: the journal is tried again
    assert not j.full and not disk.full
    j.add(b"cmd11", 11, 1)
    j.sync()
    j.close()
    again = DurableJournal(path)
    assert again.damage is None and [e[1] for e in again[:]] == list(range(1, 12)) and again.getCurrentTerm() == 1
    again.close()


def test_failed_snapshot_removes_its_partial_file_and_backs_off_until_space_returns(tmpfs):
    disk = DiskMonitor(tmpfs, "node n1")
    replica = Replica(WatchHub(LoopBridge()))
    store = SnapshotStore(os.path.join(tmpfs, "snapshots"))
    dump = os.path.join(tmpfs, "raft.dump")
    checkpointer = Checkpointer(dump, store, "127.0.0.1:7001", ["127.0.0.1:7001"], replica, disk=disk)
    journal = DurableJournal(os.path.join(tmpfs, "raft.journal"), disk=disk)  # its probe tells of space
    for i in range(50):  # state that does not fit in the space left: ~200 KiB of incompressible values
        replica.apply(i + 1, encode([SetOp(f"k{i}", os.urandom(4096))]))
    filler = fill_leaving(tmpfs, 0)
    entries = ((b"a", 49, 1), (b"b", 50, 1))

    def attempt() -> Progress:
        checkpointer.capture(dump + ".tmp", entries[1], entries[0], ["127.0.0.1:7001"])
        if not os.path.lexists(dump + ".tmp"):  # not started: a back-off answers WRITING until its time
            return checkpointer.progress()
        os.replace(dump + ".tmp", dump)  # what PySyncObj does as soon as capture returns
        deadline = time.monotonic() + 10
        while (progress := checkpointer.progress()) is Progress.WRITING and time.monotonic() < deadline:
            time.sleep(0.01)
        return progress

    assert attempt() is Progress.FAILED
    assert os.listdir(store.folder) == [] and disk.full and "snapshot" in disk.failing()
    assert attempt() is Progress.WRITING  # at once again: backing off, nothing written or frozen
    assert checkpointer.failures == 1
    journal.onOneSecondTimer()  # the probe finds no space
    assert journal.full
    os.unlink(filler)
    journal.onOneSecondTimer()  # space came back: the back-off ends
    assert not journal.full
    while checkpointer.progress() is Progress.WRITING:  # the deferred attempt gives way at once
        time.sleep(0.01)
    assert attempt() is Progress.DONE
    assert len(store.list()) == 1 and not disk.full
    journal.close()
