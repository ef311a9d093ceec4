"""A node for testing the HTTP API without a cluster: api.node_port.Node over the real,
pure state machine, applying every proposal at once.

* Writes: `propose` applies the op in its own log entry (index 1, 2, ...) and returns its
  OpResult; every op is recorded in `proposed`. Set `fail_propose` to an exception to make
  proposals raise it (and change nothing).
* Reads: `read_view` is node.reads.ReadView over the state and a lock; `prepare_read` decides
  like node.raft.RaftNode (calls recorded in `reads`). Set `fail_read` to make it raise.
* Blocking queries: the real node.watch.WatchHub, woken by the state machine's listener
  through a node.bridge.LoopBridge attached in `attach`.
* Sessions: the real node.session_keeper.SessionKeeper (lock-delays; TTL timers while leading);
  renewals are recorded in `renewed`.
* Role: a leader serves itself; a follower (`follow(leader, http)`) says ReadRoute.LEADER
  for default reads, and its `leader_http()` is where the API forwards them.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

from node.bridge import LoopBridge, Pulse, wait_until
from node.codec import ConfigOp, Op, SetOp, encode
from node.errors import NoLeaderError
from node.metrics import (
    BATCH_BUCKETS,
    FSYNC_BUCKETS_S,
    PAUSE_BUCKETS_S,
    SNAPSHOT_BUCKETS_S,
    Histogram,
    NodeMetrics,
    RaftEvents,
)
from node.reads import Consistency, ReadRoute, ReadView
from node.session_keeper import SessionKeeper
from node.state_machine import KVStateMachine, OpResult, to_image
from node.timeline import Timeline
from node.watch import WatchHub
from snapshots import format as fmt


class FakeNode:
    def __init__(self, node_id: str = "n1", raft_address: str = "127.0.0.1:7001", *, leader: bool = True,
                 snapshot_dir: str | None = None) -> None:
        self._node_id, self._raft_address = node_id, raft_address
        self.state = KVStateMachine()
        self.lock = threading.Lock()
        self.bridge = LoopBridge()
        self.hub = WatchHub(self.bridge)
        self.state.listener = self.hub.on_apply
        self.keeper = SessionKeeper(self.bridge, lambda: self.is_leader, self._session_ttls, self.propose)
        self.state.session_listener = self.keeper.on_session_event
        self.renewed: list[str] = []
        self.cluster_changes = Pulse()
        self.index = 0
        self.disk_full = False  # status() says this node's disk takes no durable write (node.disk)
        self.proposed: list[Op] = []
        self.config_changes: list[ConfigOp] = []
        self.reads: list[tuple[Consistency, float | None]] = []
        self.waits: list[tuple[str, bool]] = []
        self.fail_propose: Exception | None = None
        self.fail_read: Exception | None = None
        self.fail_config: Exception | None = None
        self.snapshot_dir = snapshot_dir
        self._leader: str | None = raft_address if leader else None
        self._leader_http: str | None = None
        self.contact_ms: int | None = 0 if leader else None
        self.voters = [raft_address]
        self.peer_hellos: dict = {}  # raft address -> node.membership.PeerHello
        self.raft_events = RaftEvents()
        self.match_indexes: dict[str, int] = {}  # what metrics() reports as the followers' match indexes
        self.started = time.monotonic()
        self.ui_changes = Pulse()
        self.timeline = Timeline(on_record=lambda: self.bridge.post(self.ui_changes.fire))

    # -- test controls ------------------------------------------------------------------------
    def follow(self, leader: str | None, leader_http: str | None, contact_ms: int | None = 100) -> None:
        """Become a follower of `leader` (None: no leader known), reachable over HTTP at `leader_http`."""
        self._leader, self._leader_http, self.contact_ms = leader, leader_http, contact_ms
        self.cluster_changes.fire()

    def put(self, key: str, value: bytes, flags: int = 0) -> OpResult:
        """Apply a write directly (test set-up), as a committed entry would."""
        return self._apply(SetOp(key, value, flags))

    def _apply(self, op: Op) -> OpResult:
        with self.lock:
            self.index += 1
            return self.state.apply(self.index, encode([op]))[0]

    # -- identity -----------------------------------------------------------------------------
    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def raft_address(self) -> str:
        return self._raft_address

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.bridge.attach(loop)
        loop.call_soon(self.keeper.sync_role)

    # -- who leads ----------------------------------------------------------------------------
    @property
    def leader(self) -> str | None:
        return self._leader

    @property
    def is_leader(self) -> bool:
        return self._leader == self._raft_address

    def leader_http(self) -> str | None:
        return self._leader_http

    async def wait_for_leader(self, timeout_s: float) -> str:
        leader = await wait_until(lambda: self._leader, self.cluster_changes, timeout_s)
        if leader is None:
            raise NoLeaderError(f"no leader elected within {timeout_s:g}s")
        return leader

    async def wait_for_cluster_change(self, timeout_s: float) -> None:
        await self.cluster_changes.wait(timeout_s)

    def timeline_since(self, seq: int) -> list[dict]:
        return self.timeline.since(seq)

    async def wait_for_timeline(self, timeout_s: float) -> None:
        await self.ui_changes.wait(timeout_s)

    @property
    def last_contact_ms(self) -> int | None:
        return self.contact_ms

    @property
    def uptime_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    # -- writes and reads ---------------------------------------------------------------------
    async def propose(self, op: Op, timeout_s: float, size_bytes: int = 0) -> OpResult:
        self.proposed.append(op)
        if self.fail_propose is not None:
            raise self.fail_propose
        return self._apply(op)

    async def prepare_read(self, consistency: Consistency, max_stale_s: float | None, timeout_s: float) -> ReadRoute:
        self.reads.append((consistency, max_stale_s))
        if self.fail_read is not None:
            raise self.fail_read
        if consistency is Consistency.STALE:
            if max_stale_s is None or self.is_leader:
                return ReadRoute.LOCAL
            fresh = self.contact_ms is not None and self.contact_ms <= max_stale_s * 1000
            return ReadRoute.LOCAL if fresh else ReadRoute.LEADER
        await self.wait_for_leader(timeout_s)
        if consistency is Consistency.DEFAULT and not self.is_leader:
            return ReadRoute.LEADER
        return ReadRoute.LOCAL  # the barrier: every write here is applied already

    def read_view(self) -> ReadView:
        return ReadView(self.lock, self)

    async def wait_for_change(self, key: str, prefix: bool, timeout_s: float) -> None:
        self.waits.append((key, prefix))
        await self.hub.wait(key, prefix, timeout_s)

    # -- sessions -----------------------------------------------------------------------------
    def session_renewed(self, session_id: str, ttl_ns: int) -> None:
        self.renewed.append(session_id)
        self.keeper.renew(session_id, ttl_ns)

    def lock_delay_left_s(self, key: str) -> float:
        return self.keeper.lock_delay_left_s(key)

    def _session_ttls(self) -> dict[str, int]:
        with self.lock:
            return {sid: s.ttl_ns for sid, s in self.state.sessions.sessions.items() if s.ttl_ns}

    # -- cluster ------------------------------------------------------------------------------
    def status(self) -> dict:
        return {"id": self._node_id, "raft": self._raft_address, "http": "", "leader": self._leader,
                "state": "leader" if self.is_leader else "follower", "term": 0, "commit_index": self.index,
                "applied_index": self.index, "keys": len(self.state.entries), "last_contact_ms": self.contact_ms,
                "recovering": False, "cluster_id": "fake",
                "disk": {"full": self.disk_full,
                         "reason": f"node {self._node_id}: disk full" if self.disk_full else None}}

    def peers(self) -> list[str]:
        return list(self.voters)

    def members(self) -> dict[str, tuple[str, str]]:
        return dict(self.state.members)

    def configuration(self) -> dict:
        return {"cluster_id": "fake", "index": self.index, "voters": list(self.voters), "learners": {},
                "members": dict(self.state.members)}

    def unreachable_peers(self) -> list[str]:
        return []

    def hellos(self) -> dict:
        return dict(self.peer_hellos)

    async def change_config(self, op: ConfigOp, timeout_s: float) -> OpResult:
        self.config_changes.append(op)
        if self.fail_config is not None:
            raise self.fail_config
        if op.action == "remove":
            self.voters = [v for v in self.voters if v != op.raft_addr]
        return OpResult(True)

    def transfer_leadership(self, target, done) -> None:
        done(False)

    def metrics(self) -> NodeMetrics:
        """The fake's figures: its index as every Raft index, one entry per proposal, the
        `raft_events` and `match_indexes` a test sets, and the blocking queries waiting."""
        return NodeMetrics(
            node_id=self._node_id, is_leader=self.is_leader, has_leader=self._leader is not None, term=1,
            commit_index=self.index, applied_index=self.index, last_index=self.index,
            last_contact_s=None if self.contact_ms is None else self.contact_ms / 1000,
            follower_match_index=dict(self.match_indexes), blocking_queries=self.hub.waiting,
            proposals_pending=0, events=self.raft_events, entries_appended=self.index,
            entries_proposed=len(self.proposed), writes_proposed=len(self.proposed), journal_bytes_written=0,
            fsync_seconds=Histogram(FSYNC_BUCKETS_S), writes_per_entry=Histogram(BATCH_BUCKETS), merged_entries=0,
            merged_batches=0, barrier_rounds=0,
            barrier_reads=0, reads_per_barrier=Histogram(BATCH_BUCKETS), snapshots_taken=0, snapshot_failures=0,
            snapshot_seconds=Histogram(SNAPSHOT_BUCKETS_S), snapshot_capture_pause_seconds=Histogram(PAUSE_BUCKETS_S),
            snapshot_last_size_bytes=None,
        )

    # -- snapshots ----------------------------------------------------------------------------
    def snapshot_files(self) -> list[str]:
        if self.snapshot_dir is None:
            return []
        return [os.path.join(self.snapshot_dir, n) for n in sorted(os.listdir(self.snapshot_dir), reverse=True)]

    async def snapshot_file(self, timeout_s: float) -> str:
        if self.snapshot_dir is None:
            raise RuntimeError("FakeNode was built without a snapshot_dir")
        path = os.path.join(self.snapshot_dir, f"snapshot-{self.index}.rkvs")
        with self.lock:
            header = fmt.SnapshotHeader(self.index, 1, len(self.state.entries), 0.0)
            fmt.write(path, header, to_image(self.state))
        return path
