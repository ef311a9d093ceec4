import os

import pytest

from node.engine.journal import HEADER, DurableJournal, JournalError


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "raft.journal")


def fill(j, first, last, term=1):
    for idx in range(first, last + 1):
        j.add(f"cmd{idx}".encode(), idx, term)


def test_journal_reopens_with_every_entry_and_meta(path):
    j = DurableJournal(path)
    fill(j, 1, 50)
    j.setCurrentTerm(4, "127.0.0.1:7002")
    j.setRaftCommitIndex(40)
    j._destroy()
    j2 = DurableJournal(path)
    assert len(j2) == 50 and j2[0] == (b"cmd1", 1, 1) and j2[-1] == (b"cmd50", 50, 1)
    assert j2.getCurrentTerm() == 4 and j2.getVotedForNodeId() == "127.0.0.1:7002"
    assert j2.getRaftCommitIndex() == 40


def test_journal_sync_is_grouped_and_tracks_the_synced_index(path):
    synced = []
    j = DurableJournal(path, on_sync=lambda idx, t: synced.append(idx))
    fill(j, 1, 10)
    assert j.dirty and j.synced_index == 0
    j.sync()
    j.sync()  # nothing new: no second fdatasync
    fill(j, 11, 12)
    j.sync()
    assert synced == [10, 12] and j.synced_index == 12 and not j.dirty


def test_journal_term_and_vote_are_stored_before_set_current_term_returns(path):
    j = DurableJournal(path)
    j.setCurrentTerm(9, "me")
    # Read back by a second, independent reader while the first is still open.
    assert DurableJournal(path).getCurrentTerm() == 9


def test_journal_commit_index_hint_never_exceeds_the_log(path):
    j = DurableJournal(path)
    fill(j, 1, 5)
    j.setRaftCommitIndex(500)
    assert j.getRaftCommitIndex() == 5


def test_journal_delete_entries_from_truncates_file(path):
    j = DurableJournal(path)
    fill(j, 1, 20)
    j.deleteEntriesFrom(10)  # list position 10 = index 11
    j.add(b"new", 11, 2)
    j._destroy()
    j2 = DurableJournal(path)
    assert [e[1] for e in j2] == list(range(1, 12)) and j2[-1] == (b"new", 11, 2)


def test_journal_delete_entries_to_keeps_tail_and_indexes(path):
    j = DurableJournal(path)
    fill(j, 1, 20)
    j.deleteEntriesTo(15)
    assert j[0][1] == 16 and j.entry_term(16) == 1 and j.entry_term(15) is None
    fill(j, 21, 22)
    j._destroy()
    assert [e[1] for e in DurableJournal(path)] == list(range(16, 23))


def test_journal_torn_tail_is_cut_and_reported(path, caplog):
    j = DurableJournal(path)
    fill(j, 1, 5)
    j._destroy()
    with open(path, "ab") as f:
        f.write(b"\x30\x00\x00\x00garbage")  # a record header promising more than is there
    j2 = DurableJournal(path)
    assert len(j2) == 5
    assert "torn record" in caplog.text


def test_journal_checksum_mismatch_ends_the_log(path, caplog):
    j = DurableJournal(path)
    fill(j, 1, 5)
    third = j._offsets[2]
    j._destroy()
    with open(path, "r+b") as f:
        f.seek(third + 24)
        f.write(b"X")  # flip a byte of entry 3's command
    j2 = DurableJournal(path)
    assert [e[1] for e in j2] == [1, 2]
    assert "checksum mismatch" in caplog.text
    assert os.path.getsize(path) == third
    [broken] = [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tail.broken")]
    assert os.path.getsize(os.path.join(os.path.dirname(path), broken)) > 0  # quarantined, not deleted


def test_journal_rejects_a_foreign_file(path):
    with open(path, "wb") as f:
        f.write(b"PYSYNCOBJ\x00" + b"\x00" * 40)
    with pytest.raises(JournalError, match="not a raftkv journal"):
        DurableJournal(path)


def test_journal_new_file_has_header_only(path):
    DurableJournal(path)._destroy()
    assert os.path.getsize(path) == HEADER.size


def test_journal_keeps_entries_after_a_loaded_snapshot_that_it_already_holds(path):
    # PySyncObj loads a snapshot as clear() + add(prev) + add(last); Raft keeps what follows.
    j = DurableJournal(path)
    fill(j, 1, 30)
    j.clear()
    j.add(b"cmd19", 19, 1)
    j.add(b"cmd20", 20, 1)
    assert [e[1] for e in j] == list(range(19, 31))
    j._destroy()
    assert [e[1] for e in DurableJournal(path)] == list(range(19, 31))


def test_journal_drops_its_log_for_a_snapshot_it_does_not_match(path):
    j = DurableJournal(path)
    fill(j, 1, 30)
    j.clear()
    j.add(b"other", 19, 2)
    j.add(b"other", 40, 2)  # the leader's snapshot is ahead of us, or of another term
    assert [e[1] for e in j] == [19, 40]


def test_journal_reads_back_entries_past_its_tail_cache(path, monkeypatch):
    """Only the newest commands stay in memory; older ones are read back from the file, through
    every way PySyncObj reads the log (index, negative index, slices, iteration), across a tail
    cut and a compaction."""
    monkeypatch.setattr("node.engine.journal.TAIL_CACHE_ENTRIES", 4)
    j = DurableJournal(path)
    fill(j, 1, 30)
    assert len(j._tail) == 4 and sorted(j._tail) == [27, 28, 29, 30]
    assert j[0] == (b"cmd1", 1, 1) and j[-1] == (b"cmd30", 30, 1) and j[9] == (b"cmd10", 10, 1)
    tail = j[5:]
    assert len(tail) == 25 and tail[0] == (b"cmd6", 6, 1) and tail[-1] == (b"cmd30", 30, 1)
    assert [e[1] for e in tail] == list(range(6, 31)) and tail[:2] == [(b"cmd6", 6, 1), (b"cmd7", 7, 1)]
    assert list(reversed(j[27:29])) == [(b"cmd29", 29, 1), (b"cmd28", 28, 1)]
    assert not j[30:] and j[::10] == [(b"cmd1", 1, 1), (b"cmd11", 11, 1), (b"cmd21", 21, 1)]
    with pytest.raises(IndexError):
        j[30]
    j.deleteEntriesFrom(25)  # index 26 on: a conflict
    j.add(b"new26", 26, 2)
    assert j[-1] == (b"new26", 26, 2) and j[-2] == (b"cmd25", 25, 1) and 27 not in j._tail
    j.deleteEntriesTo(20)  # compaction: index 21 first
    assert j[0] == (b"cmd21", 21, 1) and j.entry(26) == (b"new26", 26, 2) and j.entry_term(21) == 1
    assert [e[0] for e in j] == [b"cmd21", b"cmd22", b"cmd23", b"cmd24", b"cmd25", b"new26"]
    j._destroy()
    assert list(DurableJournal(path)) == [(f"cmd{i}".encode(), i, 1) for i in range(21, 26)] + [(b"new26", 26, 2)]


def test_journal_compaction_of_every_entry_leaves_an_empty_log(path):
    j = DurableJournal(path)
    fill(j, 1, 5)
    j.deleteEntriesTo(5)
    assert len(j) == 0 and not j._tail and j.last_index == 0 and j.entry_term(5) is None
    j.add(b"six", 6, 1)
    j._destroy()
    assert list(DurableJournal(path)) == [(b"six", 6, 1)]


def test_compaction_hands_the_replaced_file_to_a_closer_thread_and_leaks_no_descriptor(path, monkeypatch):
    """Closing the replaced file frees its blocks (tens of ms for a large journal): not on the
    tick thread that compacts, and not never."""
    import node.engine.journal as journal_module

    j = DurableJournal(path)
    fill(j, 1, 50)
    j.sync()
    replaced = j._fd
    closers = []
    real = journal_module.close_in_background
    monkeypatch.setattr(journal_module, "close_in_background",
                        lambda fd: closers.append((fd, real(fd))) or closers[-1][1])
    j.deleteEntriesTo(40)
    [(fd, closer)] = closers
    closer.join(5)
    assert fd == replaced and j._fd != replaced and not closer.is_alive()
    held = [os.readlink(f"/proc/self/fd/{n}") for n in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{n}")]
    assert not any(target.startswith(path) and target.endswith("(deleted)") for target in held)
    assert [e[1] for e in j] == list(range(41, 51))
    j._destroy()


def test_journal_first_entry_is_read_once_and_forgotten_when_replaced(path, monkeypatch):
    monkeypatch.setattr("node.engine.journal.TAIL_CACHE_ENTRIES", 2)
    j = DurableJournal(path)
    fill(j, 1, 10)
    reads = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: (reads.append(off), real(fd, n, off))[1])
    assert j[0] == (b"cmd1", 1, 1) and j[0] == (b"cmd1", 1, 1) and len(reads) == 1  # PySyncObj reads log[0] a lot
    j.deleteEntriesFrom(0)
    j.add(b"other", 1, 2)
    j.add(b"two", 2, 2)
    j.add(b"three", 3, 2)
    assert j[0] == (b"other", 1, 2)
    j.deleteEntriesTo(1)
    assert j[0] == (b"two", 2, 2) and j[-1] == (b"three", 3, 2)
