"""Damaged journals (node/engine/journal.py): a clean JournalError, or the log cut at the first
bad record (a torn tail, or damage reported), never another exception, a hang, or an entry that
was not written. test_journal.py has the single hand-made cases; here hypothesis damages whole
files, and the shapes that cost the most are made by hand.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.engine.journal import DurableJournal, JournalError
from tests.support.fuzz import fuzz_settings

ENTRIES = [(f"command {i}".encode() * (i % 4), i, 1 + i // 7) for i in range(1, 21)]


def write_journal(path: str) -> bytes:
    j = DurableJournal(path)
    for entry in ENTRIES:
        j.add(*entry)
    j._destroy()
    with open(path, "rb") as f:
        return f.read()


@fuzz_settings(200)
@given(data=st.data())
def test_a_damaged_journal_loads_only_entries_that_were_written_in_order(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("j")
    path = str(folder / "raft.journal")
    body = bytearray(write_journal(path))
    for _ in range(data.draw(st.integers(1, 3), label="damages")):
        at = data.draw(st.integers(16, len(body)), label="at")  # the 16-byte file header has its own test
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "truncate", "zero"]), label="kind")
        if kind == "flip" and at < len(body):
            body[at] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        elif kind == "cut":
            del body[at:at + data.draw(st.integers(1, 40), label="cut")]
        elif kind == "insert":
            body[at:at] = data.draw(st.binary(min_size=1, max_size=40), label="inserted")
        elif kind == "truncate":
            del body[at:]
        else:
            body[at:at + 512] = bytes(len(body[at:at + 512]))  # a zeroed sector
    with open(path, "wb") as f:
        f.write(body)
    j = DurableJournal(path)
    loaded = list(j)
    # Every entry loaded was written, in order, with none missing in between. (Bytes cut out exactly
    # around the first records leave a journal that starts later, as a compacted one does; the
    # node then needs its snapshot or its peers, node.startup.)
    first = loaded[0][1] - 1 if loaded else 0
    assert loaded == ENTRIES[first:first + len(loaded)]
    j._destroy()
    again = DurableJournal(path)  # the cut is on disk: the next start sees the same log, undamaged
    assert list(again) == loaded and again.damage is None
    again._destroy()


@pytest.mark.timeout(60)  # a hang guard, not a measurement: this took minutes (see the commit)
def test_a_damaged_tail_full_of_plausible_lengths_is_scanned_in_bounded_work(tmp_path):
    # After a bad record, the loader looks for valid records further on (is it a torn tail or lost
    # acknowledged entries?). Here every 4th byte position reads as a record of 2 MiB that fits in
    # the file: checking each one's checksum was 2 MiB of CRC per position, minutes in all.
    path = str(tmp_path / "raft.journal")
    good = write_journal(path)
    with open(path, "ab") as f:
        f.write(b"\xff\xff\xff\xff" + b"\x00\x00\x20\x00" * (768 * 1024))  # 3 MiB
    j = DurableJournal(path)
    assert list(j) == ENTRIES and os.path.getsize(path) == len(good)
    j._destroy()


@pytest.mark.parametrize("meta", [b"[]", b'"x"', b"7", b'{"term": "3"}', b'{"term": -1}', b'{"voted_for": 5}',
                                  b'{"commit_index": []}', b'{"term": true}'])
def test_a_term_and_vote_file_of_the_wrong_shape_is_a_journal_error(tmp_path, meta):
    path = str(tmp_path / "raft.journal")
    write_journal(path)
    with open(path + ".meta", "wb") as f:
        f.write(meta)
    with pytest.raises(JournalError, match="meta is unreadable") as exc:
        DurableJournal(path)
    assert "\n" not in str(exc.value)


def test_a_well_formed_term_and_vote_file_still_loads(tmp_path):
    path = str(tmp_path / "raft.journal")
    write_journal(path)
    with open(path + ".meta", "w") as f:
        json.dump({"term": 3, "voted_for": None, "commit_index": 12}, f)
    j = DurableJournal(path)
    assert (j.getCurrentTerm(), j.getVotedForNodeId(), j.getRaftCommitIndex()) == (3, None, 12)
    j._destroy()
