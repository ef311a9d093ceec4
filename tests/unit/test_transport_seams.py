import pysyncobj
import pysyncobj.syncobj

from node.journal import DurableJournal
from node.raft import SUPPORTED_PYSYNCOBJ
from node.transport import trim_known_entries


def journal_with(tmp_path, entries):
    j = DurableJournal(str(tmp_path / "j"))
    for idx, term in entries:
        j.add(b"c%d" % idx, idx, term)
    return j


def msg(prev, prev_term, entries, term=2):
    return {"type": "append_entries", "term": term, "commit_index": 0, "prevLogIdx": prev,
            "prevLogTerm": prev_term, "entries": [(b"c%d" % i, i, t) for i, t in entries]}


def test_pysyncobj_is_the_version_our_seams_were_written_for():
    assert pysyncobj.syncobj.VERSION == SUPPORTED_PYSYNCOBJ
    # The journal seam swaps this module-level name during SyncObj's constructor.
    assert callable(pysyncobj.syncobj.createJournal)


def test_trim_drops_entries_already_held_with_the_same_term(tmp_path):
    j = journal_with(tmp_path, [(1, 1), (2, 2), (3, 2), (4, 2)])
    m = msg(1, 1, [(2, 2), (3, 2), (4, 2), (5, 2)])
    trim_known_entries(m, j)
    assert (m["prevLogIdx"], m["prevLogTerm"]) == (4, 2)
    assert [e[1] for e in m["entries"]] == [5]


def test_trim_keeps_entries_ahead_of_a_rewound_leader(tmp_path):
    # The §7.4 case: a stale success reply rewound the leader, which resends 2..3 while we
    # already hold 2..6 of its term. PySyncObj would delete 4..6; we acknowledge all of it.
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


def test_the_private_names_membership_relies_on_are_there():
    """node.raft and node.transport reach these PySyncObj 0.3.17 internals for membership,
    quarantine and graceful stops; a release that renames one must fail here, not in a cluster."""
    import inspect

    from pysyncobj.transport import TCPTransport

    source = inspect.getsource(pysyncobj.syncobj.SyncObj)
    for name in ("__raftElectionDeadline", "__updateClusterConfiguration", "__lastResponseTime",
                 "__raftMatchIndex", "__otherNodes", "def __setCurrentTerm(self, term, votedForNodeId)"):
        assert name in source, name
    # a vote already recorded for the term refuses every other candidate (our NO_VOTE relies on it)
    assert "if self.__votedForNodeId is not None:\n                        return" in source
    # the leader's step-down check reads __lastResponseTime for every peer (why we fill it in)
    assert "if self.__lastResponseTime[node] > deadline:" in source
    for method in ("_sendSelfAddress", "_shouldConnect", "_onIncomingMessageReceived", "_onMessageReceived",
                   "addNode", "dropNode"):
        assert callable(getattr(TCPTransport, method)), method
    transport_source = inspect.getsource(TCPTransport)
    assert "message != 'readonly'" in transport_source and "self._nodeAddrToNode" in transport_source
