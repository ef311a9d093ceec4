"""Every place the engine reaches into PySyncObj 0.3.17 beyond its documented API, pinned.

node/engine/NOTES.md lists each reach and why we need it; a release that renames a private
name, changes a hook's shape, a message field or the order of a tick must fail here, not in a
cluster. Source checks read PySyncObj's code; the rest drive a real SyncObj built the way
node.engine builds it (our journal through the createJournal seam, our transport, our
replicated entry point), ticked by hand.
"""

import inspect
import os
import pickle
import re
import select
import time
from dataclasses import dataclass

import pysyncobj
import pysyncobj.journal
import pysyncobj.pickle
import pysyncobj.pipe_notifier
import pysyncobj.poller
import pysyncobj.serializer
import pysyncobj.syncobj
import pysyncobj.tcp_connection
import pysyncobj.tcp_server
import pysyncobj.transport
import pytest
from pysyncobj import FAIL_REASON, SERIALIZER_STATE, SyncObj, SyncObjConf
from pysyncobj.node import TCPNode
from pysyncobj.transport import TCPTransport

from node.engine import internals, wire
from node.engine.engine import RaftEngine
from node.engine.failures import error_for
from node.engine.journal import DurableJournal
from node.engine.journal_seam import journal_installed
from node.engine.read_index import ReadIndex
from node.engine.replicated import ReplicatedLog
from node.engine.status import EngineStatus, Role, role_of
from node.engine.transport import DurableTransport
from node.engine.version import SUPPORTED_PYSYNCOBJ, check_version
from node.errors import NoLeaderError, NotAppliedError, OutcomeUnknownError
from node.membership import Standing
from tests.support.cluster import HOST, free_ports

SYNCOBJ_SOURCE = inspect.getsource(pysyncobj.syncobj.SyncObj)


def source_of(name: str) -> str:
    return inspect.getsource(getattr(SyncObj, name))


def in_order(source: str, *snippets: str) -> bool:
    positions = [source.find(s) for s in snippets]
    return -1 not in positions and positions == sorted(positions)


# -- the release ------------------------------------------------------------------------------


def test_pysyncobj_is_the_version_our_seams_were_written_for():
    assert pysyncobj.syncobj.VERSION == SUPPORTED_PYSYNCOBJ
    # The journal seam swaps this module-level name during SyncObj's constructor.
    assert callable(pysyncobj.syncobj.createJournal)
    check_version()  # the node refuses to start on any other release


# -- a real SyncObj, built as the engine builds it --------------------------------------------


@dataclass
class Peer:
    syncobj: SyncObj
    journal: DurableJournal
    transport: DurableTransport
    log: ReplicatedLog
    address: str
    others: list[str]
    applied: list


@pytest.fixture
def make_peer(tmp_path):
    built = []

    def make(other_count: int = 1) -> Peer:
        ports = free_ports(1 + other_count)
        address, others = f"{HOST}:{ports[0]}", [f"{HOST}:{p}" for p in ports[1:]]  # the others never answer
        journal = DurableJournal(str(tmp_path / f"{ports[0]}.journal"))
        applied = []
        transports = []

        def make_transport(syncobj, self_node, other_nodes):
            transports.append(DurableTransport(syncobj, self_node, other_nodes, journal=journal, standing=Standing()))
            return transports[-1]

        log = ReplicatedLog(lambda index, payload: applied.append((index, payload)) or index)
        conf = SyncObjConf(autoTick=False, bindAddress=address, dynamicMembershipChange=True,
                           journalFile=journal.path, appendEntriesUseBatch=False)
        with journal_installed(journal):
            syncobj = SyncObj(address, others, conf=conf, consumers=[log], transportClass=make_transport)
        built.append(syncobj)
        return Peer(syncobj, journal, transports[0], log, address, others, applied)

    yield make
    for syncobj in built:
        syncobj.destroy()  # without a tick thread: closes the transport and the journal at once


def elect_alone(peer: Peer) -> None:
    internals.hold_election_for(peer.syncobj, -1)
    deadline = time.monotonic() + 5
    while not internals.is_leader(peer.syncobj) and time.monotonic() < deadline:
        peer.syncobj.doTick(0.0)
    assert internals.is_leader(peer.syncobj)


def test_the_create_journal_seam_gives_syncobj_our_journal(make_peer):
    peer = make_peer()
    assert peer.syncobj._SyncObj__raftLog is peer.journal
    assert pysyncobj.syncobj.createJournal is pysyncobj.journal.createJournal  # swapped back
    assert "self.__raftLog = createJournal(self.__conf.journalFile)" in SYNCOBJ_SOURCE


def test_our_journal_implements_every_journal_method_syncobj_calls():
    called = set(re.findall(r"__raftLog\.(\w+)", SYNCOBJ_SOURCE)) | {"__getitem__", "__len__"}
    interface = {name for name, _ in inspect.getmembers(pysyncobj.journal.Journal, inspect.isfunction)}
    for name in called | interface:
        assert callable(getattr(DurableJournal, name, None)), name


def test_a_snapshot_load_replaces_the_log_by_clear_and_two_adds():
    # DurableJournal keeps the entries after the snapshot by recognising this sequence.
    assert in_order(source_of("_SyncObj__loadDumpFile"), "self.__raftLog.clear()", "self.__raftLog.add(*data[2])",
                    "self.__raftLog.add(*data[1])")


def test_the_replicated_entry_point_keeps_method_id_0(make_peer):
    peer = make_peer()
    # One replicated method on the one consumer, none on SyncObj itself: the journaled id is 0.
    assert peer.syncobj._methodToID == {(id(peer.log), "apply_v0"): 0}
    assert "cmd = (funcID, args)" in inspect.getsource(pysyncobj.syncobj.replicated)


def test_an_applied_entry_is_numbered_last_applied_plus_one(make_peer):
    peer = make_peer(other_count=0)
    elect_alone(peer)
    results = []
    peer.log.apply(b"payload", callback=lambda result, error: results.append((result, error)))
    deadline = time.monotonic() + 5
    while not results and time.monotonic() < deadline:
        peer.syncobj.doTick(0.01)
    index = peer.syncobj.raftLastApplied
    assert results == [(index, FAIL_REASON.SUCCESS)] and peer.applied[-1] == (index, b"payload")
    assert in_order(source_of("_SyncObj__applyLogEntries"), "res = self.__doApplyCommand(entry[0])",
                    "callback(res, FAIL_REASON.SUCCESS)", "self.__raftLastApplied += 1")


# -- the private names in node.engine.internals -------------------------------------------------


def test_every_internal_reach_works_on_a_real_syncobj(make_peer):
    peer = make_peer()
    syncobj = peer.syncobj
    assert internals.is_leader(syncobj) is False and internals.last_known_leader(syncobj) is None
    internals.hold_election_for(syncobj, 123.0)
    assert 122.9 < internals.election_due_in(syncobj) <= 123.0
    internals.record_no_vote(syncobj, 5)
    assert syncobj.raftCurrentTerm == 5 and peer.journal.getVotedForNodeId() == internals.NO_VOTE
    assert syncobj._SyncObj__votedForNodeId == internals.NO_VOTE
    assert {n.address for n in internals.other_voters(syncobj)} == set(peer.others)
    assert isinstance(internals.match_indexes(syncobj), dict)
    assert internals.last_log_index(syncobj) == syncobj._SyncObj__raftLog[-1][1]
    pipe = syncobj._SyncObj__pipeNotifier._PipeNotifier__pipeR
    internals.wake(syncobj)  # the tick thread's poll watches this pipe: it is readable now
    assert select.select([pipe], [], [], 0)[0] == [pipe]
    newcomer = f"{HOST}:{free_ports(1)[0]}"
    internals.set_other_voters(syncobj, [newcomer])
    assert {n.address for n in internals.other_voters(syncobj)} == {newcomer}
    assert abs(syncobj._SyncObj__lastResponseTime[TCPNode(newcomer)] - internals.raft_clock()) < 1  # filled in by us
    assert TCPNode(newcomer) in internals.match_indexes(syncobj)


def test_a_followers_poll_ends_at_its_election_deadline(make_peer):
    """internals.wake_at_election_deadline: the tick polls through `self._poller.poll(timeToWait)`,
    and the deadline it checks is on PySyncObj's clock. The poll's own wait is recorded, not
    timed: a poll also ends early for any event (a refused connection to the silent peer)."""
    assert "self._poller.poll(timeToWait)" in source_of("_onTick")
    assert "if self.__raftElectionDeadline < monotonicTime() and self.__connectedToAnyone():" in SYNCOBJ_SOURCE
    assert pysyncobj.syncobj.monotonicTime is internals.raft_clock
    peer = make_peer()  # a follower whose one peer never answers
    waits = []
    peer.syncobj._poller.poll = waits.append  # what the wrapper hands on
    internals.wake_at_election_deadline(peer.syncobj)
    internals.hold_election_for(peer.syncobj, 0.3)
    peer.syncobj.doTick(5.0)
    internals.hold_election_for(peer.syncobj, 10.0)  # further off than the tick's wait: untouched
    peer.syncobj._poller.poll(5.0)
    internals.hold_election_for(peer.syncobj, -1)  # overdue (not connected, so no election): untouched
    peer.syncobj._poller.poll(5.0)
    assert 0.2 < waits[0] <= 0.302 and waits[1:] == [5.0, 5.0], waits


def test_an_unstored_term_is_forgotten_and_a_candidate_is_a_follower_again(make_peer):
    peer = make_peer()
    syncobj = peer.syncobj
    syncobj._SyncObj__raftCurrentTerm, syncobj._SyncObj__votedForNodeId = 9, peer.address  # as an election sets them
    syncobj._SyncObj__raftState = internals.CANDIDATE
    internals.forget_unstored_term(syncobj, 3, None)
    assert syncobj.raftCurrentTerm == 3 and syncobj._SyncObj__votedForNodeId is None
    assert syncobj.getStatus()["state"] == internals.FOLLOWER


def test_what_a_full_disk_meets_in_pysyncobj():
    # __setCurrentTerm takes the term into memory before the journal stores it (why the transport
    # stores a newer term first, and the engine forgets one whose store failed) ...
    assert in_order(source_of("_SyncObj__setCurrentTerm"), "self.__raftCurrentTerm = term",
                    "self.__raftLog.setCurrentTerm(term, votedForNodeId)")
    # ... and only these two messages make it adopt a peer's term.
    on_message = source_of("_SyncObj__onMessageReceived")
    assert on_message.count("self.__setCurrentTerm(message['term'], None)") == 2
    assert in_order(on_message, "if message['type'] == 'request_vote'", "if message['type'] == 'append_entries'")
    # A leader's failed append registers no callback: the command is dropped with the tick.
    assert in_order(source_of("_checkCommandsToApply"), "self.__raftLog.add(command, idx, term)",
                    "self.__commandsWaitingCommit[idx].append((term, callback))")
    assert "logger.exception('failed _onTick in _autoTickThread')" in source_of("_autoTickThread")
    # A failed snapshot is logged with this line (our filter drops it) and tried again at once.
    compaction = source_of("_SyncObj__tryLogCompaction")
    assert "logger.warning('Failed to store full dump')" in compaction
    assert in_order(compaction, "if serializeState == SERIALIZER_STATE.FAILED:", "logger.warning(",
                    "if serializeState != SERIALIZER_STATE.NOT_SERIALIZING:")
    # A hook that raises or leaves no <dump>.tmp is taken silently, and the checker decides when
    # the next attempt may start.
    serialize = inspect.getsource(pysyncobj.serializer.Serializer.serialize)
    assert "except Exception as e:" in serialize and "self.__pid = -2" in serialize
    assert "if status in (SERIALIZER_STATE.SUCCESS, SERIALIZER_STATE.FAILED):" in inspect.getsource(
        pysyncobj.serializer.Serializer.checkSerializing)
    assert pysyncobj.syncobj.logger.name == "pysyncobj.syncobj"


def test_the_leader_gets_match_indexes_for_every_link_and_a_leader_node(make_peer):
    peer = make_peer(other_count=0)
    elect_alone(peer)
    assert internals.last_known_leader(peer.syncobj).address == peer.address


def test_the_read_index_reaches_work_on_a_real_leader(make_peer):
    peer = make_peer(other_count=0)
    elect_alone(peer)
    syncobj = peer.syncobj
    # The election's no-op: PySyncObj appends one entry of the new term at once.
    noop = internals.leader_noop_index(syncobj)
    assert noop == syncobj._SyncObj__raftLog[-1][1] and syncobj._SyncObj__raftLog[-1][0] == b"\x01"
    internals.wake(syncobj)  # the pipe PySyncObj's own queued commands wake the tick with
    poller = syncobj._poller
    started = time.monotonic()
    poller.poll(5.0)
    assert time.monotonic() - started < 4.0, "a wake must end the tick thread's poll"
    # A single-node leader confirms a round at once, after its no-op is committed and applied.
    sent, done = [], []
    ri = ReadIndex(syncobj, lambda link, message: sent.append(message))
    ri.request(done.append)
    deadline = time.monotonic() + 5
    while not done and time.monotonic() < deadline:
        syncobj.doTick(0.01)
        ri.tick()
    assert done == [None] and syncobj.raftLastApplied >= noop and sent == [] and ri.confirmed == 1


def test_what_read_index_relies_on_in_pysyncobj():
    # The leader appends a no-op of its term when elected, and remembers where.
    assert in_order(source_of("_SyncObj__onBecomeLeader"), "self.__raftLog.add(_bchr(_COMMAND_TYPE.NO_OP), idx, term)",
                    "self.__noopIDx = idx")
    # A follower's acknowledgement carries no term, and one for an older term is never sent
    # (append_entries of an older term is ignored): why ReadIndex has its own ping and pong.
    assert "'term'" not in source_of("_SyncObj__sendNextNodeIdx")
    assert "if message['type'] == 'append_entries' and message['term'] >= self.__raftCurrentTerm:" in SYNCOBJ_SOURCE
    # The wake-up pipe exists whenever batching is off (node.engine.conf).
    assert "if not self.__conf.appendEntriesUseBatch and PIPE_NOTIFIER_ENABLED:" in SYNCOBJ_SOURCE


def test_the_behaviour_behind_the_private_reaches_is_unchanged():
    # A vote already recorded for the term refuses every other candidate (our NO_VOTE relies on it).
    assert "if self.__votedForNodeId is not None:\n                        return" in SYNCOBJ_SOURCE
    assert "def __setCurrentTerm(self, term, votedForNodeId)" in SYNCOBJ_SOURCE
    # The leader's step-down check reads __lastResponseTime for every peer, and PySyncObj's own
    # configuration update does not fill it in (why internals.set_other_voters does).
    assert "if self.__lastResponseTime[node] > deadline:" in SYNCOBJ_SOURCE
    assert "__lastResponseTime" not in source_of("_SyncObj__updateClusterConfiguration")
    # A loaded snapshot's cluster becomes the configuration (our deserialize hook decides it).
    assert "self.__updateClusterConfiguration([node for node in data[3] if node != self.__selfNode])" in (
        source_of("_SyncObj__loadDumpFile"))
    # The last leader stays known until an election or a step-down clears it (RaftEngine.leader).
    assert "return self.__raftLeader" in source_of("_getLeader")
    # The election deadline is what starts an election (the transport holds it off).
    assert "if self.__raftElectionDeadline < monotonicTime() and self.__connectedToAnyone():" in SYNCOBJ_SOURCE


# -- the tick ---------------------------------------------------------------------------------


def test_the_tick_runs_our_callbacks_after_sending_and_before_polling():
    assert in_order(
        source_of("_onTick"),
        "while commitIdx < self.__getCurrentLogIndex():",  # commit computation (counts the leader's copy)
        "needSendAppendEntries = self.__applyLogEntries()",
        "self.__sendAppendEntries()",
        "self._checkCommandsToApply()",  # appends new commands and ships them (batching off)
        "self.__tryLogCompaction()",
        "for callback in self.__onTickCallbacks:",  # journal.sync, keep_alive, tick calls
        "self._poller.poll(timeToWait)",
    )
    assert "self.__onTickCallbacks.append(callback)" in source_of("addOnTickCallback")  # run in order added


def test_the_engine_registers_its_tick_callbacks_in_the_order_it_relies_on():
    source = inspect.getsource(RaftEngine._tick_callbacks)
    assert in_order(source, "self._tr.send_synced_acks", "self._tr.keep_alive", "self._run_tick_calls",
                    "self._ri.tick", "self._disk_upkeep", "self._commit_alone")


def test_the_leaders_commit_loop_counts_its_own_copy_up_to_the_current_log_index():
    """What internals.count_own_copy_up_to bounds: the loop's end, read in _onTick itself, and the
    leader's own copy counted unasked (count = 1)."""
    tick = source_of("_onTick")
    assert in_order(tick, "if self.__raftState == _RAFT_STATE.LEADER:",
                    "while commitIdx < self.__getCurrentLogIndex():", "count = 1",
                    "self.__raftMatchIndex[node] >= commitIdx")
    # Called from _onTick only there and in a candidate's vote request (not clamped: not a leader).
    assert tick.count("self.__getCurrentLogIndex()") == 2
    assert "return self.__raftLog[-1][1]" in source_of("_SyncObj__getCurrentLogIndex")


def test_the_leader_commits_only_what_its_syncs_cover(make_peer):
    peer = make_peer(other_count=0)
    synced = [0]
    internals.count_own_copy_up_to(peer.syncobj, lambda: synced[0])
    synced[0] = peer.journal.last_index
    elect_alone(peer)
    results = []
    peer.log.apply(b"payload", callback=lambda result, error: results.append((result, error)))
    for _ in range(20):
        peer.syncobj.doTick(0.0)
    last = peer.journal.last_index
    assert peer.applied == [] and peer.syncobj.raftCommitIndex < last  # appended, not synced: not committed
    assert peer.syncobj._SyncObj__getCurrentLogIndex() == last  # elsewhere the real last index
    synced[0] = last
    deadline = time.monotonic() + 5
    while not results and time.monotonic() < deadline:
        peer.syncobj.doTick(0.01)
    assert results and peer.syncobj.raftCommitIndex == last and peer.applied[-1][1] == b"payload"


def test_the_wake_pipe_runs_the_handler_we_give_it_inside_the_poll(make_peer):
    """The journal's sync thread wakes the tick thread through PySyncObj's own pipe, and a
    follower's acknowledgements leave from its handler (internals.on_wake)."""
    peer = make_peer()
    assert "self.__callback()" in inspect.getsource(pysyncobj.pipe_notifier.PipeNotifier)
    assert in_order(SYNCOBJ_SOURCE, "self.__transport = transportClass(", "PipeNotifier(self._poller)",
                    "self.__thread.start()")
    ran = []
    internals.on_wake(peer.syncobj, lambda: ran.append(1))
    internals.wake(peer.syncobj)
    started = time.monotonic()
    peer.syncobj.doTick(5.0)
    assert ran == [1] and time.monotonic() - started < 4.0, "a wake must end the poll and run the handler"


def test_queued_commands_are_appended_and_shipped_after_this_ticks_append_entries(make_peer):
    """DurableTransport skips an empty AppendEntries while commands are queued: the tick sends its
    AppendEntries (commit index, heartbeat) before `_checkCommandsToApply`, which appends each
    queued command and, batching off, ships it to every peer at once."""
    tick = source_of("_onTick")
    assert in_order(tick, "needSendAppendEntries = self.__applyLogEntries()", "self.__sendAppendEntries()",
                    "self._checkCommandsToApply()", "self._poller.poll(timeToWait)")
    check = source_of("_checkCommandsToApply")
    assert in_order(check, "self.__commandsQueue.get_nowait()", "self.__raftLog.add(command, idx, term)",
                    "if not self.__conf.appendEntriesUseBatch:", "self.__sendAppendEntries()")
    assert "'commit_index': self.__raftCommitIndex" in source_of("_SyncObj__sendAppendEntries")
    peer = make_peer()
    assert internals.commands_queued(peer.syncobj) is False
    peer.log.apply(b"payload", callback=None)
    assert internals.commands_queued(peer.syncobj) is True


def test_what_merged_entries_rely_on_in_pysyncobj():
    """node.engine.merge appends queued commands as PySyncObj's leader branch does, and a
    follower's forwarded callback waits for the index and term it is told (NOTES.md, "Merged entries")."""
    assert "self._checkCommandsToApply()" in source_of("_onTick")
    assert in_order(source_of("_checkCommandsToApply"), "command, callback = self.__commandsQueue.get_nowait()",
                    "if isinstance(callback, tuple):", "requestNode, requestID = callback",
                    "idx, term = self.__getCurrentLogIndex() + 1, self.__raftCurrentTerm",
                    "self.__raftLog.add(command, idx, term)",
                    "self.__commandsWaitingCommit[idx].append((term, callback))",
                    "'type': 'apply_command_response',", "'log_idx': idx,", "'log_term': term,",
                    "self.__sendAppendEntries()")
    assert in_order(source_of("_SyncObj__onMessageReceived"),
                    "callback = self.__commandsWaitingReply.pop(requestID, None)", "idx = message['log_idx']",
                    "term = message['log_term']",
                    "self.__commandsWaitingCommit[idx].append((term, callback))")
    assert in_order(source_of("_SyncObj__applyLogEntries"),
                    "subscribers = self.__commandsWaitingCommit.pop(entry[1], [])",
                    "for subscribeTermID, callback in subscribers:", "callback(res, FAIL_REASON.SUCCESS)",
                    "callback(None, FAIL_REASON.DISCARDED)")


def test_the_merge_reaches_work_on_a_real_leader(make_peer):
    peer = make_peer(other_count=0)
    elect_alone(peer)
    syncobj = peer.syncobj
    peer.log.apply(b"queued", callback=None)
    assert len(internals.command_queue(syncobj)) == 1
    internals.command_queue(syncobj).clear()
    index, term = internals.append_as_leader(syncobj, wire.regular_command(b"appended"))
    assert (index, term) == (peer.journal.last_index, syncobj.raftCurrentTerm)
    got = []
    internals.when_applied(syncobj, index, term, lambda result, error: got.append((result, error)))
    internals.send_append_entries(syncobj)
    checked = []
    internals.check_commands_with(syncobj, lambda own: (checked.append(1), own()))
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        syncobj.doTick(0.01)
    assert got == [(index, FAIL_REASON.SUCCESS)] and peer.applied[-1] == (index, b"appended") and checked
    assert internals.waiting_replies(syncobj) == {}


# -- status and states --------------------------------------------------------------------------


def test_raft_states_are_the_three_we_map():
    states = {k: v for k, v in vars(pysyncobj.syncobj._RAFT_STATE).items() if not k.startswith("_")}
    assert states == {"FOLLOWER": 0, "CANDIDATE": 1, "LEADER": 2}
    assert [role_of(n) for n in (0, 1, 2)] == [Role.FOLLOWER, Role.CANDIDATE, Role.LEADER]
    assert "callback(oldState, newState)" in source_of("_SyncObj__setState")


def test_get_status_has_the_keys_engine_status_reads(make_peer):
    peer = make_peer(other_count=2)
    status = EngineStatus.from_pysyncobj(peer.syncobj.getStatus())
    assert status.role is Role.FOLLOWER and status.term == peer.syncobj.raftCurrentTerm
    assert (status.commit_index, status.applied_index) == (peer.syncobj.raftCommitIndex,
                                                           peer.syncobj.raftLastApplied)
    assert status.log_len == len(peer.journal)
    assert status.unreachable_peers == tuple(sorted(peer.others))  # keyed by address, 0 = not connected
    assert "2 if self.isNodeConnected(node) else 0" in source_of("getStatus")


# -- failures ---------------------------------------------------------------------------------


def test_fail_reasons_are_the_ones_we_translate():
    codes = {k: v for k, v in vars(FAIL_REASON).items() if not k.startswith("_")}
    assert codes == {"SUCCESS": 0, "QUEUE_FULL": 1, "MISSING_LEADER": 2, "DISCARDED": 3, "NOT_LEADER": 4,
                     "LEADER_CHANGED": 5, "REQUEST_DENIED": 6, "UNKNOWN_OUTCOME": 7}
    assert error_for(FAIL_REASON.SUCCESS) is None
    assert isinstance(error_for(FAIL_REASON.MISSING_LEADER), NoLeaderError)
    for code in (FAIL_REASON.QUEUE_FULL, FAIL_REASON.DISCARDED, FAIL_REASON.NOT_LEADER, FAIL_REASON.REQUEST_DENIED):
        assert isinstance(error_for(code), NotAppliedError), code
    for code in (FAIL_REASON.LEADER_CHANGED, FAIL_REASON.UNKNOWN_OUTCOME):
        assert isinstance(error_for(code), OutcomeUnknownError), code
    # A leader that refuses a forwarded command answers like this (our transport does the same).
    assert in_order(source_of("_SyncObj__callErrCallback"), "'type': 'apply_command_response',",
                    "'request_id': requestID,", "'error': err,")


def test_transfer_leadership_takes_a_target_and_a_callback():
    assert list(inspect.signature(SyncObj.transferLeadership).parameters) == ["self", "node", "callback"]


# -- compaction hooks ----------------------------------------------------------------------------


def test_the_compaction_hooks_have_the_shapes_our_adapter_expects():
    serializer = inspect.getsource(pysyncobj.serializer.Serializer)
    # custom hooks never fork; serialize gets (last, prev, cluster) and <dump>.tmp, renamed right after
    assert "self.__useFork = tryUseFork and hasattr(os, 'fork') and serializer is None" in serializer
    assert in_order(serializer, "tmpFile = self.__fileName + '.tmp'", "self.__serializer(tmpFile, data[1:])",
                    "atomicReplace(tmpFile, self.__fileName)")
    assert "self.__serializer.serialize((data, lastAppliedEntries[1], lastAppliedEntries[0], cluster)" in (
        SYNCOBJ_SOURCE)
    assert "return (None,) + self.__deserializer(self.__fileName)" in serializer
    assert "status = self.__serializeChecker()" in serializer
    states = {k: v for k, v in vars(SERIALIZER_STATE).items() if not k.startswith("_")}
    assert states == {"NOT_SERIALIZING": 0, "SERIALIZING": 1, "SUCCESS": 2, "FAILED": 3}


# -- the transport --------------------------------------------------------------------------------


def test_the_transport_methods_we_override_keep_their_signatures():
    expected = {"send": ["self", "node", "message"], "addNode": ["self", "node"], "dropNode": ["self", "node"],
                "_sendSelfAddress": ["self", "conn"], "_shouldConnect": ["self", "node"],
                "_onIncomingMessageReceived": ["self", "conn", "message"],
                "_onMessageReceived": ["self", "node", "message"]}
    for name, params in expected.items():
        assert list(inspect.signature(getattr(TCPTransport, name)).parameters) == params, name
    assert "self.__transport = transportClass(self, self.__selfNode, self.__otherNodes)" in SYNCOBJ_SOURCE


def test_the_transport_fields_we_read_are_there(make_peer):
    transport = make_peer().transport
    for field in ("_connections", "_nodes", "_preventConnectNodes", "_nodeAddrToNode", "_syncObj"):
        assert hasattr(transport, field), field
    assert transport._syncObj.encryptor is None and transport._syncObj.conf.raftMaxTimeout > 0
    source = inspect.getsource(TCPTransport)
    # A stranger's first message is its address; an unknown one is hung up on, 'readonly' is a learner.
    assert "if node is None and message != 'readonly':\n            conn.disconnect()" in source
    assert "conn.send('readonly')" in source
    # Who connects to whom: the addresses compared as strings (a learner calls everybody instead).
    assert "self._selfNode.address > node.address" in source


def test_the_message_fields_the_transport_reads_and_writes():
    for snippet in ("'type': 'next_node_idx',\n            'next_node_idx': nextNodeIdx,",
                    "'success': success,", "if 'prevLogIdx' in message:",
                    "transmission = message.get('transmission', None)", "prevLogIdx = message['prevLogIdx']",
                    "prevLogTerm = message['prevLogTerm']", "newEntries = message.get('entries', [])",
                    "if message['type'] == 'append_entries' and message['term'] >= self.__raftCurrentTerm:",
                    "if message['type'] == 'request_vote'", "if message['type'] == 'timeout_now'",
                    "if message['type'] == 'apply_command':\n            if 'request_id' in message:"):
        assert snippet in SYNCOBJ_SOURCE, snippet


def test_an_idle_link_is_dropped_when_it_next_sends():
    # Why the keep-alive exists (NOTES.md, "Idle links"): the timeout is checked before a send.
    connection = pysyncobj.tcp_connection.TcpConnection
    assert "self.__processConnectionTimeout()" in inspect.getsource(connection._TcpConnection__trySendBuffer)
    assert "if monotonicTime() - self.__lastReadTime > self.__timeout:" in inspect.getsource(
        connection._TcpConnection__processConnectionTimeout)


def test_commands_are_pickled_with_protocol_the_journal_stores_as_bytes(make_peer):
    # Our journal stores PySyncObj's command bytes as they come: a type byte and a pickle.
    peer = make_peer(other_count=0)
    elect_alone(peer)
    peer.log.apply(b"x", callback=lambda *_: None)
    for _ in range(5):
        peer.syncobj.doTick(0.01)
    command = peer.journal[-1][0]
    assert isinstance(command, bytes) and pickle.loads(command[1:]) == (0, (b"x",))


# -- the wire (node.engine.wire; NOTES.md, "The wire") ---------------------------------------------


def test_pysyncobj_decodes_peers_and_entries_only_through_the_names_the_wire_swaps():
    connection = pysyncobj.tcp_connection.TcpConnection
    module_source = inspect.getsource(pysyncobj.tcp_connection)
    assert "import pysyncobj.pickle as pickle" in module_source and "\nimport zlib\n" in module_source
    assert module_source.count("loads(") == 1
    assert "message = pickle.loads(zlib.decompress(data))" in inspect.getsource(
        connection._TcpConnection__processParseMessage)
    assert "data = zlib.compress(pickle.dumps(message), 3)" in inspect.getsource(connection.send)
    syncobj_module = inspect.getsource(pysyncobj.syncobj)
    assert "import pysyncobj.pickle as pickle" in syncobj_module
    decodes = ["ver = pickle.loads(command[1:])", "command = pickle.loads(command[1:])",
               "newEntries = [pickle.loads(self.__recvTransmission)]", "return pickle.loads(command[1:])"]
    assert all(d in syncobj_module for d in decodes) and syncobj_module.count("loads(") == len(decodes)
    for module in (pysyncobj.transport, pysyncobj.tcp_server, pysyncobj.poller):
        assert "pickle" not in inspect.getsource(module), module.__name__
    # PySyncObj pickles with protocol 2 whatever it is asked: bytes are a call of _codecs.encode.
    assert pysyncobj.pickle.dumps(b"\xff", protocol=5).startswith(b"\x80\x02c_codecs\nencode\n")


def test_the_command_types_the_wire_lets_into_the_log():
    types = {k: v for k, v in vars(pysyncobj.syncobj._COMMAND_TYPE).items() if not k.startswith("_")}
    assert types == {"REGULAR": 0, "NO_OP": 1, "MEMBERSHIP": 2, "VERSION": 3}
    assert wire.ENTRY_TYPES == {types["REGULAR"], types["NO_OP"]}
    # Only PySyncObj's utility commands (refused by our transport) write the other two.
    assert "pickle.dumps(['add', node.id, node]), callback, _COMMAND_TYPE.MEMBERSHIP" in SYNCOBJ_SOURCE
    assert "self.setCodeVersion(args[0], callback)" in SYNCOBJ_SOURCE


def test_utility_commands_are_taken_from_strangers_before_identification():
    # Why DurableTransport refuses a first message that is not an address.
    source = inspect.getsource(TCPTransport._onIncomingMessageReceived)
    assert in_order(source, "if isinstance(message, list) and self._onUtilityMessage(conn, message):",
                    "node = self._nodeAddrToNode[message] if message in self._nodeAddrToNode else None")
    assert "self.__transport.setOnUtilityMessageCallback('remove', self._removeNodeFromCluster)" in SYNCOBJ_SOURCE


def test_the_connection_internals_the_frame_guard_overrides():
    connection = pysyncobj.tcp_connection.TcpConnection
    read = inspect.getsource(connection._TcpConnection__processRead)
    assert "incoming = self.__socket.recv(self.__recvBufferSize)" in read
    assert ("if not incoming:\n            self.disconnect()\n            return False\n"
            "        self.__readBuffer += incoming\n        return True") in read
    assert "while self.__processRead():" in inspect.getsource(connection._TcpConnection__tryReadBuffer)
    parse = inspect.getsource(connection._TcpConnection__processParseMessage)
    assert in_order(parse, "l = struct.unpack('i', self.__readBuffer[:4])[0]", "data = self.__readBuffer[4:4 + l]",
                    "self.__readBuffer = self.__readBuffer[4 + l:]")
    for method in ("connect", "disconnect"):
        assert "self.__readBuffer = bytes()" in inspect.getsource(getattr(connection, method)), method
    # Connections are built through these module-level names; an accepted one gets its socket.
    assert "conn = TcpConnection(" in inspect.getsource(pysyncobj.tcp_server.TcpServer)
    assert "socket=sock," in inspect.getsource(pysyncobj.tcp_server.TcpServer)
    assert "conn = TcpConnection(" in inspect.getsource(pysyncobj.transport.TCPTransport)
    assert list(inspect.signature(connection.__init__).parameters)[:6] == [
        "self", "poller", "onMessageReceived", "onConnected", "onDisconnected", "socket"]
    # The poller is level-triggered: what a read burst leaves in the socket is read next tick.
    assert "epoll" not in inspect.getsource(pysyncobj.poller)


def test_a_claimed_identity_replaces_the_link_and_a_redial_reuses_its_object():
    # Why the transport refuses a claim to be a peer this node dials (NOTES.md, "The wire").
    assert "self._connections[node] = conn" in inspect.getsource(TCPTransport._onIncomingMessageReceived)
    assert "return self._connections[node].connect(node.ip, node.port)" in inspect.getsource(
        TCPTransport._connectIfNecessarySingle)
    assert "self._sendSelfAddress(conn)" in inspect.getsource(TCPTransport._onOutgoingConnected)


def test_the_internals_the_secure_channel_and_the_server_guard_rely_on():
    connection = pysyncobj.tcp_connection.TcpConnection
    # GuardedConnection.send writes PySyncObj's frame, sealed, into this buffer and flushes it.
    assert in_order(inspect.getsource(connection.send), "data = zlib.compress(pickle.dumps(message), 3)",
                    "data = struct.pack('i', len(data)) + data", "self.__writeBuffer += data",
                    "self.__trySendBuffer()")
    # connect() empties the write buffer, so the hello is queued after it; the first writable event
    # of a connecting socket calls onConnected (where the transport sends the address) and then
    # everything queued leaves on the next writable event.
    assert in_order(inspect.getsource(connection.connect), "self.__writeBuffer = bytes()",
                    "self.__socket.connect((host, port))", "self.__state = CONNECTION_STATE.CONNECTING")
    assert in_order(inspect.getsource(connection._TcpConnection__processConnection),
                    "if self.__state == CONNECTION_STATE.CONNECTING:", "self.__onConnected()",
                    "if eventType & POLL_EVENT_TYPE.WRITE:", "self.__trySendBuffer()")
    # The server: our accept loop replaces this handler, built from these fields.
    server = pysyncobj.tcp_server.TcpServer
    bind = inspect.getsource(server.bind)
    assert "self.__socket.listen(5)" in bind and "self.__onNewConnection," in bind
    accept = inspect.getsource(server._TcpServer__onNewConnection)
    for name in ("self.__sendBufferSize", "self.__recvBufferSize", "self.__connectionTimeout", "self.__keepalive",
                 "self.__poller", "self.__onNewConnectionCallback(conn)"):
        assert name in accept, name
    assert "self.unbind()" in accept  # PySyncObj's: stop listening on any accept error (ours survives it)
    # An accepted connection waits in _unknownConnections until it names itself; nothing times it out.
    transport = inspect.getsource(pysyncobj.transport.TCPTransport)
    assert "self._unknownConnections.add(conn)" in transport and "onNewConnection = self._onNewIncomingConnection" \
        in transport
    assert "from .tcp_server import TcpServer" in inspect.getsource(pysyncobj.transport)


def test_peers_are_looked_up_through_the_process_wide_resolver_the_engine_replaces():
    import pysyncobj.dns_resolver

    # TCPNode.ip asks globalDnsResolver() at every connect attempt; it returns `_g_resolver`
    # once set, which node.engine.resolver.install() sets; SyncObj passes it dnsCacheTime.
    assert "globalDnsResolver().resolve(self.__host)" in inspect.getsource(TCPNode)
    assert "node.ip, node.port" in inspect.getsource(TCPTransport._connectIfNecessarySingle)
    assert "_g_resolver is None" in inspect.getsource(pysyncobj.dns_resolver.globalDnsResolver)
    assert "globalDnsResolver().setTimeouts(self.__conf.dnsCacheTime, self.__conf.dnsFailCacheTime)" in SYNCOBJ_SOURCE
    assert "host = globalDnsResolver().resolve(host)" in inspect.getsource(TCPTransport._createServer)


# -- entries in pieces ------------------------------------------------------------------------------


def test_the_leader_labels_the_last_piece_by_the_commands_length_not_the_pickles():
    """Why DurableTransport._finish_comes_early exists (NOTES.md, "Entries in pieces"): the pickle
    of (command, index, term) is longer than the command, yet 'finish' is decided on the command."""
    send = source_of("_SyncObj__sendAppendEntries")
    assert in_order(send, "entry = pickle.dumps(entries[0])", "for pos in xrange(0, len(entry), batchSizeBytes):",
                    "elif pos + batchSizeBytes >= len(entries[0][0]):", "transmission = 'finish'")
    receive = source_of("_SyncObj__onMessageReceived")
    assert in_order(receive, "self.__recvTransmission = message['data']", "elif transmission == 'finish':",
                    "newEntries = [pickle.loads(self.__recvTransmission)]", "self.__recvTransmission = ''")


def test_a_pickle_cut_short_is_told_from_a_whole_or_a_wrong_one():
    entry = (b"\x00" + os.urandom(70_000), 12345, 7)
    for protocol in (2, 4):
        whole = pickle.dumps(entry, protocol)
        assert not wire.is_cut_short(whole)
        for cut in (1, 64 * 1024, len(whole) - 30, len(whole) - 1):
            assert wire.is_cut_short(whole[:cut]), (protocol, cut)
    assert not wire.is_cut_short(b"not a pickle at all")
    assert not wire.is_cut_short(pickle.dumps(entry, 4) + b"trailing")
