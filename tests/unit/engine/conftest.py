"""A follower: a real SyncObj and DurableTransport over a DurableJournal, ticked by hand."""

import pytest
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.node import TCPNode

from node.engine import internals
from node.engine.journal import DurableJournal
from node.engine.journal_seam import journal_installed
from node.engine.replicated import ReplicatedLog
from node.engine.transport import DurableTransport
from node.membership import Standing
from tests.support.cluster import HOST, free_ports


@pytest.fixture
def follower(tmp_path):
    """(journal, transport, acks sent, the leader's node), with the journal's sync thread held."""
    ports = free_ports(2)
    address, leader = f"{HOST}:{ports[0]}", f"{HOST}:{ports[1]}"  # the leader never answers
    journal = DurableJournal(str(tmp_path / "raft.journal"))
    acks: list[int] = []
    made = []

    def make_transport(syncobj, self_node, other_nodes):
        made.append(DurableTransport(syncobj, self_node, other_nodes, journal=journal, standing=Standing(),
                                     on_ack=lambda index, at: acks.append(index)))
        return made[-1]

    conf = SyncObjConf(autoTick=False, bindAddress=address, journalFile=journal.path, appendEntriesUseBatch=False)
    with journal_installed(journal):
        syncobj = SyncObj(address, [leader], conf=conf, consumers=[ReplicatedLog(lambda i, p: i)],
                          transportClass=make_transport)
    internals.on_wake(syncobj, made[0].send_synced_acks)  # as the engine does
    journal.start_syncing(made[0].sync_completed)
    yield journal, made[0], acks, TCPNode(leader)
    syncobj.destroy()
