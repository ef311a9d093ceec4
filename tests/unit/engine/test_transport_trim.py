from node.engine.journal import DurableJournal
from node.engine.transport import trim_known_entries


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
