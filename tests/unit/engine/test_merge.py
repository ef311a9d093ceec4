"""The leader merges the batches queued in one tick into one entry (node.engine.merge).

A real SyncObj leading alone (its one peer never answers, or none), our journal and transport,
ticked by hand; the merger sends its answers to forwarded commands through a recorder.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf
from pysyncobj.node import TCPNode

from node import codec
from node.codec import (
    AclOp,
    ClusterInitOp,
    ConfigOp,
    DeleteOp,
    LockOp,
    RestoreOp,
    SessionOp,
    SetMemberOp,
    SetOp,
    TxnItem,
    TxnOp,
)
from node.engine import internals, wire
from node.engine.journal import DurableJournal
from node.engine.journal_seam import journal_installed
from node.engine.merge import EntryMerger
from node.engine.replicated import ReplicatedLog
from node.engine.transport import DurableTransport
from node.membership import Standing
from tests.support.cluster import HOST, free_ports

DATA_OPS = [
    SetOp("a", b"1"), SetOp("b", b"\x00\xff", flags=7, cas=0), DeleteOp("c"), DeleteOp("d/", recurse=True, cas=4),
    TxnOp((TxnItem("set", "t", b"v"), TxnItem("lock", "l", b"", session="s-1"))),
    LockOp("k", b"v", 1, "s-1", True), SessionOp("create", {"ID": "s-2", "TTL": 10.0}),
]


def payload(*ops) -> bytes:
    return codec.encode(list(ops))


# -- the payload ------------------------------------------------------------------------------


def test_a_merged_payload_decodes_to_every_batchs_ops_in_order():
    batches = [payload(*DATA_OPS[:3]), payload(DATA_OPS[3]), payload(*DATA_OPS[4:])]
    rows = [codec.mergeable_rows(p) for p in batches]
    assert all(r is not None for r in rows)
    assert codec.decode(codec.merged_payload(rows)) == DATA_OPS


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.builds(SetOp, st.text(max_size=20), st.binary(max_size=40),
                                   st.integers(0, 2**64 - 1), st.none() | st.integers(0, 2**63)),
                         min_size=1, max_size=6), min_size=1, max_size=6))
def test_merging_any_batches_of_writes_is_their_concatenation(batches):
    merged = codec.merged_payload([codec.mergeable_rows(payload(*ops)) for ops in batches])
    assert codec.decode(merged) == [op for ops in batches for op in ops]


@pytest.mark.parametrize("op", [
    RestoreOp(b"snapshot"), ConfigOp("promote", "h:1"), ClusterInitOp("c", ("h:1",)), SetMemberOp("h:1", "h:2", "n"),
    AclOp("policy-delete", {"ID": "x"}),
])
def test_membership_restores_and_acl_changes_keep_an_entry_of_their_own(op):
    assert codec.mergeable_rows(payload(op)) is None
    assert codec.mergeable_rows(payload(SetOp("a", b"1"), op)) is None


@pytest.mark.parametrize("raw", [
    b"", b"\xc1", b"garbage", codec.msgpack.packb([2, [[1, "a", b"", 0, None]]]),  # a newer codec
    codec.msgpack.packb([1, []]), codec.msgpack.packb([1, [[1, "a"]]]),  # no op; a set cut short
    codec.msgpack.packb([1, [[99, "a"]]]), codec.msgpack.packb([1, [[[1], "a"]]]), codec.msgpack.packb({"a": 1}),
])
def test_a_payload_that_would_not_decode_is_never_merged(raw):
    assert codec.mergeable_rows(raw) is None


# -- the leader -------------------------------------------------------------------------------


class Leader:
    """A SyncObj elected alone (its peers never answer), with the merger installed as the engine
    installs it. `applied` holds what each entry's apply saw; an entry's results are its ops' keys."""

    def __init__(self, tmp_path, peers: int = 0) -> None:
        ports = free_ports(1 + peers)
        self.address = f"{HOST}:{ports[0]}"
        self.journal = DurableJournal(str(tmp_path / "raft.journal"))
        self.applied: list[tuple[int, list]] = []
        self.sent: list[tuple[object, dict]] = []
        made = []

        def make_transport(syncobj, self_node, other_nodes):
            made.append(DurableTransport(syncobj, self_node, other_nodes, journal=self.journal, standing=Standing()))
            merger = made[-1].merger = EntryMerger(syncobj, lambda node, msg: self.sent.append((node, msg)),
                                                   lambda: self.journal.full)
            internals.check_commands_with(syncobj, merger.check_commands)
            return made[-1]

        def apply(index, data):
            ops = codec.decode(data)
            self.applied.append((index, ops))
            return [getattr(op, "key", "?") for op in ops]

        self.log = ReplicatedLog(apply)
        conf = SyncObjConf(autoTick=False, bindAddress=self.address, dynamicMembershipChange=True,
                           journalFile=self.journal.path, appendEntriesUseBatch=False, commandsWaitLeader=False)
        others = [f"{HOST}:{p}" for p in ports[1:]]
        with journal_installed(self.journal):
            self.syncobj = SyncObj(self.address, others, conf=conf, consumers=[self.log], transportClass=make_transport)
        self.transport = made[0]
        self.merger = made[0].merger

    def elect(self) -> None:
        internals.hold_election_for(self.syncobj, -1)
        deadline = time.monotonic() + 5
        while not internals.is_leader(self.syncobj) and time.monotonic() < deadline:
            self.syncobj.doTick(0.0)
        assert internals.is_leader(self.syncobj)
        self.tick_until(lambda: self.syncobj.raftLastApplied >= self.journal.last_index)

    def propose(self, *keys: str) -> list:
        """Queue one batch of sets from this node; returns the list its callback fills."""
        got: list = []
        self.log.apply(payload(*(SetOp(k, b"v") for k in keys)), callback=lambda r, e: got.append((r, e)))
        return got

    def forward(self, node: TCPNode, request_id: int, keys, slices: bool = True) -> None:
        """Queue a batch as a follower's forwarded `apply_command` reaches PySyncObj."""
        message = {"type": "apply_command", "request_id": request_id, "slices": True} if slices else {
            "type": "apply_command", "request_id": request_id}
        self.merger.forwarded(node, message)
        self.syncobj._applyCommand(wire.regular_command(payload(*(SetOp(k, b"v") for k in keys))), (node, request_id))

    def tick_until(self, done, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            self.syncobj.doTick(0.01)
        assert done()

    def close(self) -> None:
        self.syncobj.destroy()


@pytest.fixture
def leader(tmp_path):
    made = Leader(tmp_path)
    made.elect()
    yield made
    made.close()


def test_batches_queued_in_one_tick_become_one_entry_and_each_caller_gets_its_own_results(leader):
    before = leader.journal.last_index
    got = [leader.propose("a", "b"), leader.propose("c"), leader.propose("d", "e", "f")]
    leader.tick_until(lambda: all(got))
    assert leader.journal.last_index == before + 1
    index, ops = leader.applied[-1]
    assert index == before + 1 and [op.key for op in ops] == list("abcdef")
    assert got == [[(["a", "b"], FAIL_REASON.SUCCESS)], [(["c"], FAIL_REASON.SUCCESS)],
                   [(["d", "e", "f"], FAIL_REASON.SUCCESS)]]
    assert (leader.merger.entries_merged, leader.merger.batches_merged) == (1, 3)


def test_a_lone_batch_is_appended_as_before(leader):
    before = leader.journal.last_index
    got = leader.propose("a")
    leader.tick_until(lambda: got)
    assert got == [(["a"], FAIL_REASON.SUCCESS)] and leader.journal.last_index == before + 1
    assert leader.merger.entries_merged == 0


def test_a_forwarded_batch_learns_its_slice_with_the_entrys_index(leader):
    follower = TCPNode(f"{HOST}:{free_ports(1)[0]}")
    got = leader.propose("a")
    leader.forward(follower, 41, ["b", "c"])
    leader.tick_until(lambda: got)
    index, ops = leader.applied[-1]
    assert [op.key for op in ops] == ["a", "b", "c"] and got == [(["a"], FAIL_REASON.SUCCESS)]
    [(node, answer)] = leader.sent
    assert node == follower and answer == {"type": "apply_command_response", "request_id": 41, "log_idx": index,
                                           "log_term": leader.syncobj.raftCurrentTerm, "part": [1, 2]}
    assert leader.merger.sliceable == set()


def test_a_forwarded_batch_appended_alone_is_forgotten_too(leader):
    follower = TCPNode(f"{HOST}:{free_ports(1)[0]}")
    before = leader.journal.last_index
    leader.forward(follower, 8, ["a"])
    assert leader.merger.sliceable == {(follower, 8)}
    leader.tick_until(lambda: leader.syncobj.raftLastApplied > before)
    assert [op.key for op in leader.applied[-1][1]] == ["a"] and leader.sent == []
    assert leader.merger.sliceable == set()


def test_a_follower_of_an_earlier_release_keeps_its_batch_in_an_entry_of_its_own(leader):
    """It would take a merged entry's results for its own: it does not say `slices`."""
    follower = TCPNode(f"{HOST}:{free_ports(1)[0]}")
    before = leader.journal.last_index
    got = [leader.propose("a"), leader.propose("b")]
    leader.forward(follower, 7, ["c"], slices=False)
    leader.tick_until(lambda: all(got) and leader.syncobj.raftLastApplied >= before + 2)
    assert [[op.key for op in ops] for _, ops in leader.applied[-2:]] == [["a", "b"], ["c"]]
    assert leader.sent == []  # PySyncObj answered it itself, through the transport, without a part


def test_an_entry_that_must_stay_alone_keeps_the_queues_order(leader):
    before = leader.journal.last_index
    got = [leader.propose("a"), leader.propose("b")]
    config: list = []
    leader.log.apply(payload(ConfigOp("promote", "h:1")), callback=lambda r, e: config.append((r, e)))
    got += [leader.propose("c"), leader.propose("d")]
    leader.tick_until(lambda: all(got) and config)
    entries = [[type(op).__name__ + getattr(op, "key", "") for op in ops] for _, ops in leader.applied]
    assert leader.journal.last_index == before + 4
    assert entries[-4:] == [["SetOpa", "SetOpb"], ["ConfigOp"], ["SetOpc"], ["SetOpd"]]
    assert [g[0][0] for g in got] == [["a"], ["b"], ["c"], ["d"]]


def test_a_merged_entry_stays_under_its_size_bound(leader):
    big = ["k" * 100_000 + str(i) for i in range(12)]  # 12 batches of one 100 KB key each
    got = [leader.propose(k) for k in big]
    before = leader.journal.last_index
    leader.tick_until(lambda: all(got))
    sizes = [len(leader.journal[i][0]) for i in range(len(leader.journal)) if leader.journal[i][1] > before]
    assert max(sizes) <= 1024 * 1024 + 1024 and len(sizes) == 2  # 10 batches, then the last 2
    assert [g[0][0] for g in got] == [[k] for k in big]


def test_a_follower_forgets_what_it_was_told_was_sliceable_and_leaves_commands_to_pysyncobj(tmp_path):
    node = Leader(tmp_path, peers=1)  # never elected: its peer never answers
    try:
        node.merger.sliceable.add((TCPNode("h:1"), 3))
        got = node.propose("a")
        node.syncobj.doTick(0.0)
        assert node.merger.sliceable == set() and node.applied == []
        assert got == [(None, FAIL_REASON.MISSING_LEADER)]  # PySyncObj's own answer, as before
    finally:
        node.close()


# -- the follower -----------------------------------------------------------------------------


def test_a_follower_asks_to_be_merged_and_takes_the_part_it_is_told(follower):
    _journal, transport, _acks, leader = follower
    syncobj = transport._syncObj
    message = {"type": "apply_command", "command": b"x", "request_id": 5}
    transport.send(leader, message)  # not connected: nothing leaves, but the message is what would
    assert message["slices"] is True
    results = []
    internals.waiting_replies(syncobj)[5] = lambda r, e: results.append((r, e))
    transport._onMessageReceived(leader, {"type": "apply_command_response", "request_id": 5, "log_idx": 10 ** 6,
                                          "log_term": 1, "part": [2, 3]})
    [(term, callback)] = syncobj._SyncObj__commandsWaitingCommit[10 ** 6]
    callback(["r0", "r1", "r2", "r3", "r4", "r5"], FAIL_REASON.SUCCESS)
    callback(None, FAIL_REASON.DISCARDED)
    assert term == 1 and results == [(["r2", "r3", "r4"], FAIL_REASON.SUCCESS), (None, FAIL_REASON.DISCARDED)]


@pytest.mark.parametrize("part", [[1], [1, -1], ["1", 2], [1, 2, 3], "1,2", None])
def test_a_part_that_makes_no_sense_is_ignored(follower, part):
    _journal, transport, _acks, leader = follower
    syncobj = transport._syncObj
    results = []
    internals.waiting_replies(syncobj)[5] = lambda r, e: results.append((r, e))
    transport._onMessageReceived(leader, {"type": "apply_command_response", "request_id": 5, "log_idx": 10 ** 6,
                                          "log_term": 1, "part": part})
    [(_term, callback)] = syncobj._SyncObj__commandsWaitingCommit[10 ** 6]
    callback(["r0", "r1"], FAIL_REASON.SUCCESS)
    assert results == [(["r0", "r1"], FAIL_REASON.SUCCESS)]
