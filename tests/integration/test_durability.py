"""Durability that a process kill cannot show: a kill keeps the page cache, so these tests
trace write, sync and acknowledgement on a real in-process 3-node cluster (real PySyncObj,
real sockets, real files), and simulate a power loss by cutting each journal back to what
had been fsynced. Without the syncs, both tests fail."""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict

import pytest

from node.codec import SetOp
from node.errors import NoLeaderError, OutcomeUnknownError
from node.raft import NodeAddresses, RaftNode
from node.settings import JOURNAL_FILE
from tests.support.cluster import HOST, free_ports
from tests.support.wait import wait_until_async


class Trace:
    def __init__(self):
        self.syncs = defaultdict(list)  # node id -> [(synced_index, t)]
        self.acks = defaultdict(list)  # node id -> [(acked_index, t)]

    def synced_by(self, node_id: str, index: int, t: float) -> bool:
        return any(i >= index and ts <= t for i, ts in self.syncs[node_id])

    def observer(self, node_id: str) -> NodeTrace:
        return NodeTrace(self, node_id)


class NodeTrace:
    """One node's durability observer (node.engine.DurabilityObserver), recording into a Trace."""

    def __init__(self, trace: Trace, node_id: str):
        self.trace, self.node_id = trace, node_id

    def synced(self, index: int, at: float) -> None:
        self.trace.syncs[self.node_id].append((index, at))

    def acknowledged(self, index: int, at: float) -> None:
        self.trace.acks[self.node_id].append((index, at))


def start_nodes(root, trace=None, ports=None):
    ports = ports or free_ports(6)
    rafts = [f"{HOST}:{p}" for p in ports[:3]]
    nodes = []
    for i in range(3):
        node_id = f"n{i + 1}"
        observer = trace.observer(node_id) if trace is not None else None
        addresses = NodeAddresses(node_id, rafts[i], f"{HOST}:{ports[3 + i]}", peers=rafts)
        nodes.append(RaftNode(addresses, os.path.join(root, node_id), observer=observer))
    for node in nodes:  # a new cluster: each node hears from its peers that nobody knows it yet
        node.admit(timeout_s=30)
    return nodes, ports


async def leader_of(nodes, timeout=15.0):
    for n in nodes:  # as the HTTP app does on start-up: the nodes deliver their events to this loop
        n.attach(asyncio.get_running_loop())

    def agreed():
        leaders = [n for n in nodes if n.is_leader]
        if len(leaders) == 1 and all(n.leader == leaders[0].addresses.raft for n in nodes):
            return leaders[0]
        return {n.addresses.node_id: (n.is_leader, n.leader) for n in nodes}  # not a node: shown on a timeout

    return await wait_until_async("one leader that every node names", agreed, timeout, interval=0.02,
                                  until=lambda v: isinstance(v, RaftNode))


async def acked_writes(leader, count, concurrency=16):
    """Issue writes; return {key: (modify_index, ack_time)} for every acknowledged one."""
    acked = {}

    async def writer(w):
        for i in range(w, count, concurrency):
            key = f"k{i}"
            try:
                result = await leader.propose(SetOp(key, b"v%d" % i), 5.0)
            except (OutcomeUnknownError, NoLeaderError):
                continue  # not acknowledged (a leader change on a loaded machine): nothing to check
            t = time.monotonic()
            assert result.ok
            acked[key] = (leader.state.get(key).modify_index, t)

    await asyncio.gather(*(writer(w) for w in range(concurrency)))
    assert len(acked) >= count // 4, f"only {len(acked)} of {count} writes acknowledged"
    return acked


def test_durability_every_ack_follows_a_sync_covering_it(tmp_path):
    trace = Trace()
    nodes, _ = start_nodes(str(tmp_path), trace)
    try:
        async def scenario():
            leader = await leader_of(nodes)
            return leader, await acked_writes(leader, 400)

        leader, acked = asyncio.run(scenario())
    finally:
        for n in nodes:
            n.close()
    followers = [n.addresses.node_id for n in nodes if n is not leader]
    # 1. A follower acknowledges only entries already fsynced on its own disk.
    checked = 0
    for node_id in followers:
        for index, t in trace.acks[node_id]:
            assert trace.synced_by(node_id, index, t), f"{node_id} acked {index} before syncing it"
            checked += 1
    assert checked > 10
    # 2. A client is answered only once a majority (leader + one follower) has it on disk.
    leader_id = leader.addresses.node_id
    for key, (index, t) in acked.items():
        assert trace.synced_by(leader_id, index, t), f"{key}@{index} acked before the leader synced it"
        assert any(trace.synced_by(f, index, t) for f in followers), f"{key}@{index} acked with no follower sync"


@pytest.mark.parametrize("round_", [1, 2])
def test_durability_acked_writes_survive_a_simulated_power_loss_of_every_node(tmp_path, round_):
    root = str(tmp_path)
    nodes, ports = start_nodes(root)
    try:
        async def scenario():
            leader = await leader_of(nodes)
            acked = await acked_writes(leader, 300)
            # The power fails now: remember what each disk really holds.
            cut = {n.addresses.node_id: n.journal.synced_offset for n in nodes}
            return acked, cut

        acked, cut = asyncio.run(scenario())
    finally:
        for n in nodes:
            n.close()  # flushes everything; we then throw away what was not yet synced
    for node_id, offset in cut.items():
        path = os.path.join(root, node_id, JOURNAL_FILE)
        assert os.path.getsize(path) >= offset
        os.truncate(path, offset)
    nodes, _ = start_nodes(root, ports=ports)
    try:
        async def check():
            leader = await leader_of(nodes)
            await leader.propose(None, 5.0)  # barrier: the new leader has applied the committed log
            return {k: (e.modify_index if (e := leader.state.get(k)) else None) for k in acked}

        survived = asyncio.run(check())
    finally:
        for n in nodes:
            n.close()
    lost = {k: v for k, v in acked.items() if survived[k] != v[0]}
    assert not lost, f"{len(lost)} acknowledged writes lost or changed after power loss"
