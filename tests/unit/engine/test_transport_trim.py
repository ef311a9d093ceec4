import pytest

from node.engine import internals, wire
from node.engine.journal import DurableJournal
from node.engine.transport import as_whole_entry, trim_known_entries


def journal_with(tmp_path, entries):
    j = DurableJournal(str(tmp_path / "j"))
    for idx, term in entries:
        j.add(b"c%d" % idx, idx, term)
    return j


def msg(prev, prev_term, entries, term=2):
    return {"type": "append_entries", "term": term, "commit_index": 0, "prevLogIdx": prev,
            "prevLogTerm": prev_term, "entries": [(b"c%d" % i, i, t) for i, t in entries]}


def test_trim_drops_entries_already_held_with_the_same_term(tmp_path):
    j = journal_with(tmp_path, [(1, 1), (2, 2), (3, 2), (4, 2)])
    m = msg(1, 1, [(2, 2), (3, 2), (4, 2), (5, 2)])
    trim_known_entries(m, j)
    assert (m["prevLogIdx"], m["prevLogTerm"]) == (4, 2)
    assert [e[1] for e in m["entries"]] == [5]


def test_trim_keeps_entries_ahead_of_a_rewound_leader(tmp_path):
    # node/engine/NOTES.md, "Truncation of committed entries": a stale success reply rewound the
    # leader, which resends 2..3 while we already hold 2..6 of its term. PySyncObj would delete
    # 4..6; we acknowledge all of it.
    j = journal_with(tmp_path, [(1, 1)] + [(i, 2) for i in range(2, 7)])
    m = msg(1, 1, [(2, 2), (3, 2)])
    trim_known_entries(m, j)
    assert (m["prevLogIdx"], m["prevLogTerm"], m["entries"]) == (6, 2, [])


def test_trim_leaves_a_real_conflict_to_pysyncobj(tmp_path):
    j = journal_with(tmp_path, [(1, 1), (2, 1), (3, 1)])
    m = msg(1, 1, [(2, 2), (3, 2)])
    trim_known_entries(m, j)
    assert m["prevLogIdx"] == 1 and [e[1] for e in m["entries"]] == [2, 3]


def test_trim_cuts_at_the_first_conflict_after_matching_entries(tmp_path):
    j = journal_with(tmp_path, [(1, 1), (2, 1), (3, 1)])
    m = msg(1, 1, [(2, 1), (3, 2)])
    trim_known_entries(m, j)
    assert (m["prevLogIdx"], m["prevLogTerm"]) == (2, 1) and [e[1] for e in m["entries"]] == [3]


def test_trim_does_not_vouch_for_older_term_entries_beyond_the_message(tmp_path):
    j = journal_with(tmp_path, [(1, 1), (2, 1), (3, 1)])
    m = msg(1, 1, [(2, 1)], term=3)
    trim_known_entries(m, j)
    assert (m["prevLogIdx"], m["entries"]) == (2, [])


def in_pieces(entry, prev, prev_term, term=2, pieces=3):
    """An entry as PySyncObj's leader sends one of 64 KiB or more: 'start', 'process', 'finish'."""
    data = wire.dumps(entry)
    size = -(-len(data) // pieces)
    cuts = [data[i:i + size] for i in range(0, len(data), size)]
    labels = ["start"] + ["process"] * (len(cuts) - 2) + ["finish"]
    return [{"type": "append_entries", "term": term, "commit_index": 0, "prevLogIdx": prev, "prevLogTerm": prev_term,
             "transmission": label, "data": cut} for label, cut in zip(labels, cuts, strict=True)]


ENTRY = (bytes([wire.REGULAR]) + b"v" * 300, 3, 2)


def test_a_whole_entry_in_pieces_becomes_an_append_of_that_entry_and_is_trimmed_like_one(tmp_path):
    j = journal_with(tmp_path, [(1, 1)] + [(i, 2) for i in range(2, 7)])
    *first, last = in_pieces(ENTRY, 2, 2)
    assert as_whole_entry(last, b"".join(m["data"] for m in first))
    assert "transmission" not in last and "data" not in last and last["entries"] == [ENTRY]
    trim_known_entries(last, j)
    assert (last["prevLogIdx"], last["prevLogTerm"], last["entries"]) == (6, 2, [])


@pytest.mark.parametrize("so_far,data", [
    (None, b"x"),  # no 'start' seen
    (b"", b"\x80\x04K\x05."),  # decodes, but to an int
    (b"", wire.dumps((b"\x07command", 3, 2))),  # a command type raftkv never writes
    (b"", b"garbage"),
])
def test_what_is_not_one_well_formed_entry_is_left_to_pysyncobj(so_far, data):
    message = {"type": "append_entries", "term": 2, "commit_index": 0, "prevLogIdx": 2, "prevLogTerm": 2,
               "transmission": "finish", "data": data}
    before = dict(message)
    assert not as_whole_entry(message, so_far) and message == before


def test_a_stale_resend_in_pieces_truncates_nothing_a_follower_holds(follower):
    """A leader rewound by a stale reply resends an entry of 64 KiB or more, in pieces, that the
    follower already holds with later entries after it. PySyncObj deletes every entry after the
    message's prevLogIdx (CRITICAL 'truncating already-applied log entries' once they are applied):
    entries the leader may have counted as replicated here."""
    journal, transport, _, leader = follower
    base = journal.last_index
    for i in range(base + 1, base + 6):
        journal.add(bytes([wire.REGULAR]) + b"v%d" % i, i, 1)
    entry = (bytes([wire.REGULAR]) + b"v%d" % (base + 2), base + 2, 1)
    for message in in_pieces(entry, base + 1, 1, term=1):
        transport._onMessageReceived(leader, message)
    assert journal.last_index == base + 5 and [journal.entry_term(i) for i in range(base + 1, base + 6)] == [1] * 5
    assert internals.received_transmission(transport._syncObj) == ""
    # An entry it does not hold, in pieces, is appended as before.
    new = (bytes([wire.REGULAR]) + b"new", base + 6, 1)
    for message in in_pieces(new, base + 5, 1, term=1):
        transport._onMessageReceived(leader, message)
    assert journal.last_index == base + 6 and journal.entry(base + 6) == new
