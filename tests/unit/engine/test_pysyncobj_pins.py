import pysyncobj
import pysyncobj.syncobj

from node.engine.version import SUPPORTED_PYSYNCOBJ


def test_pysyncobj_is_the_version_our_seams_were_written_for():
    assert pysyncobj.syncobj.VERSION == SUPPORTED_PYSYNCOBJ
    # The journal seam swaps this module-level name during SyncObj's constructor.
    assert callable(pysyncobj.syncobj.createJournal)


def test_the_private_names_membership_relies_on_are_there():
    """node.engine reaches these PySyncObj 0.3.17 internals for membership, quarantine and
    graceful stops; a release that renames one must fail here, not in a cluster."""
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
