"""A raftkv node: the composition root of the Raft engine (PySyncObj behind node.engine) and
the KV state machine, and what the node does at run time (membership upkeep, writes, reads).

The pieces live in their own modules:
  startup                what the data folder says before Raft runs: identity, voters and
                         standing, the journal and the snapshot to start from, a quarantine
  admission              a fresh node's admission by its peers; a quarantined node's cure
  codec / state_machine  what the log means (pure)
  replica                this node's copy of the state, as the engine applies and installs it
  checkpoint             snapshots as the engine's log compaction
  engine/                PySyncObj 0.3.17 with our journal, transport and compaction seams
  proposer               batching writes into log entries, read barriers
  bridge                 the one door from the tick thread to the event loop
  reads                  consistency modes and the locked read view
  settings               timing and storage choices

Threading: construct and `close()` from the main thread (PySyncObj's tick thread exits when
the thread that built it exits); `attach(loop)` once the loop runs. Everything else here is
called from the asyncio loop; the state machine is mutated only on the tick thread, and what
the tick thread has to say reaches the loop through `self.bridge`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid

from node.addresses import NodeAddresses
from node.admission import QuarantineCure, admit_fresh_node
from node.bridge import LoopBridge, Pulse, wait_until
from node.checkpoint import Checkpointer
from node.codec import ClusterInitOp, ConfigOp, Op, SetMemberOp
from node.disk import DiskMonitor, is_no_space
from node.engine import CompactionHooks, DurabilityObserver, RaftEngine, Role, check_version
from node.errors import (
    ClusterDiskFullError,
    DiskFullError,
    MembershipBusyError,
    NoLeaderError,
    NotAppliedError,
    NotReadyError,
)
from node.metrics import NodeMetrics, RaftEvents
from node.proposer import Proposer, ReadBarrier
from node.reads import Consistency, ReadRoute, ReadView
from node.replica import Replica
from node.session_keeper import SessionKeeper
from node.settings import DUMP_FILE, SNAPSHOT_DIR, RaftSettings
from node.startup import plan_startup, recover_log
from node.state_machine import KVStateMachine, OpResult
from node.timeline import Timeline
from node.watch import WatchHub
from snapshots.store import SnapshotStore

__all__ = ["NodeAddresses", "RaftNode"]

log = logging.getLogger(__name__)


class RaftNode:
    def __init__(
        self,
        addresses: NodeAddresses,
        data_dir: str,
        settings: RaftSettings | None = None,
        *,
        join_voters: list[str] | None = None,
        force_new_cluster: bool = False,
        observer: DurabilityObserver | None = None,
    ) -> None:
        """`join_voters`: this node joins an existing cluster whose voters these are (it
        starts as a learner); None: it is (or forms) a cluster from `addresses.peers`.
        `force_new_cluster`: the survivor of a majority lost for good restarts alone, as the
        only voter of its cluster (its data is all there is; writes it lacked are lost).
        `observer`: sees every journal sync and acknowledgement (node.engine.observer)."""
        check_version()
        self.addresses = addresses
        self.data_dir = data_dir
        self.settings = settings or RaftSettings()
        plan = plan_startup(addresses, data_dir, join_voters, force_new_cluster)
        self.standing = plan.standing
        self.membership_file = plan.membership_file
        self._config_floor = plan.config_floor  # see _on_config_applied
        self.forced = force_new_cluster
        # A learner: the index from which the configuration applied here is its own (_past_admission);
        # a learner restarted has its saved configuration's, stored only from its admission on.
        self._admitted_at: int | None = plan.config_floor if self.standing.learner and plan.config_floor else None
        self._admission_reached = False
        self._changing = False
        self._membership_unsaved = False  # the membership file missed a change (a full disk)
        self.stopping = False
        self.bridge = LoopBridge()
        # Fired on the loop when the leader, its HTTP address, this node's role or the
        # configuration changes: what wait_for_leader and the forwarder wait on.
        self.cluster_changes = Pulse()
        self.snapshots_written = Pulse()
        # The console's timeline (api/ui/): recorded beside the log lines below; `ui_changes`
        # fires on the loop at each record, which is what its event streams wait on.
        self.ui_changes = Pulse()
        self.timeline = Timeline(on_record=lambda: self.bridge.post(self.ui_changes.fire))
        self._replayed = threading.Event()
        self._seen_leader: tuple[str | None, str | None] = (None, None)
        self.events = RaftEvents()  # counted on the tick thread, exported by metrics()
        self._logged_membership: tuple[list[str], list[str]] | None = None
        self.watch_hub = WatchHub(self.bridge)
        # Sessions' TTL timers (on the leader) and lock-delays: in memory, not in the log.
        self.session_keeper = SessionKeeper(self.bridge, lambda: self.engine.is_leader, self._session_ttls,
                                            self.propose)
        self.replica = Replica(self.watch_hub, self._on_config_applied, self.session_keeper.on_session_event)
        self.disk = DiskMonitor(data_dir, f"node {addresses.node_id}")
        self.checkpointer = Checkpointer(
            os.path.join(data_dir, DUMP_FILE),
            SnapshotStore(os.path.join(data_dir, SNAPSHOT_DIR), self.settings.snapshot_retain),
            addresses.raft, sorted({addresses.raft, *plan.other_voters}), self.replica,
            alone=force_new_cluster, on_written=lambda: self.bridge.post(self.snapshots_written.fire),
            disk=self.disk, timeline=self.timeline,
        )
        recovered = recover_log(data_dir, self.checkpointer, self.standing,
                                on_sync=observer.synced if observer is not None else None, disk=self.disk)
        self.journal = recovered.journal
        self.recovering = recovered.recovering
        self.engine = RaftEngine(
            addresses.raft, plan.other_voters, bind=addresses.bind, data_dir=data_dir, settings=self.settings,
            journal=self.journal, standing=self.standing, compaction=CompactionHooks(self.checkpointer),
            apply_entry=self.replica.apply, membership_hello=self._membership_hello,
            on_role_changed=self._on_role_changed, on_removed=self._on_told_removed, observer=observer,
        )
        self.quarantine = QuarantineCure(recovered.quarantine, self.engine, self.journal, self.standing)
        self.proposer = Proposer(self.engine.submit, self.bridge)
        # A write that met the disk as it filled is never answered by PySyncObj (its command is
        # dropped with the tick it broke): answer what is in flight now rather than at the deadline.
        self.disk.on_refusing(lambda: self.proposer.abandon_in_flight(
            f"{self.disk.reason()} while the request was in flight"))
        self.read_barrier = ReadBarrier(self._read_index_round)
        # Everything the engine's callbacks reach exists: start it (it replays the journal at once).
        self.engine.start()
        if self.quarantine.active:
            self.engine.add_tick_callback(self.quarantine.check)
        self.engine.add_tick_callback(self._watch_on_tick)
        self.started_at = time.monotonic()

    @property
    def node_id(self) -> str:
        return self.addresses.node_id

    @property
    def raft_address(self) -> str:
        return self.addresses.raft

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """From the event loop, before serving: where tick-thread events are delivered."""
        self.bridge.attach(loop)
        loop.call_soon(self.session_keeper.sync_role)  # a role taken before the loop ran posted nothing

    def _watch_on_tick(self) -> None:
        """Tick thread, every tick: tell the loop when the leader (or its HTTP address) changed,
        including a leader forgotten after an election timeout of silence, which no message
        announces; and tell a waiting start-up when the local replay is done."""
        seen = (self.leader, self.leader_http())
        if seen != self._seen_leader:
            if seen[0] != self._seen_leader[0]:
                if seen[0] is not None:
                    self.events.leader_changes += 1  # etcd's rule: a known leader other than the last one seen
                self._log_leader_change(seen[0])
            self._seen_leader = seen
            self.bridge.post(self.cluster_changes.fire)
        if not self._replayed.is_set() and self.applied_index >= self.replay_target:
            self._replayed.set()
        if self._membership_unsaved and not self.disk.refuses_entries:
            self._store_membership()
        if self.standing.learner and not self._admission_reached and self._past_admission():
            self._admission_reached = True  # once: the configuration then in force becomes this node's
            self._on_config_applied()

    def _log_leader_change(self, leader: str | None) -> None:
        """One line per change of the leader this node knows (rare: elections, failures)."""
        term = self.term
        if leader is None:
            log.warning("no leader: none heard within the election timeout (term %d, last leader %s)",
                        term, self._seen_leader[0], extra={"term": term, "leader": None})
            last = self._seen_leader[0]
            self.timeline.record("no-leader", f"no leader known (last: "
                                              f"{self._name(last) if last else 'none'})", term=term)
        elif leader == self.addresses.raft:
            log.info("leader: this node (%s) in term %d", leader, term, extra={"term": term, "leader": leader})
            self.timeline.record("leader", f"leader: this node ({self._id(leader)}) in term {term}", term=term,
                                 leader=leader)
        else:
            log.info("leader: %s in term %d", leader, term, extra={"term": term, "leader": leader})
            self.timeline.record("leader", f"leader: {self._name(leader)} in term {term}", term=term, leader=leader)

    # -- membership ---------------------------------------------------------------------------

    def admit(self, timeout_s: float = 3600.0) -> None:
        """Block (main thread, before serving) until a fresh node may take part: its peers
        confirm the cluster is new. Raises StartupError with the one line to show otherwise."""
        admit_fresh_node(self.engine, self.addresses, self.standing, timeout_s)

    def _membership_hello(self) -> dict:
        """Tick thread: the part of this node's hello to its peers that membership decides on."""
        state = self.state
        return {
            "cluster": state.cluster_id,
            "members": sorted(state.members),
            "voters": list(state.voters),
            "learners": sorted(state.learners),
        }

    def _store_membership(self) -> None:
        """Tick thread (an apply must not raise: PySyncObj would apply the entry again). On a full
        disk the file keeps the previous configuration (as after a crash before the store) and
        is stored again once the disk takes writes (`_watch_on_tick`)."""
        state = self.state
        try:
            self.membership_file.store(state.cluster_id, list(state.voters), dict(state.learners), state.applied_index)
        except OSError as exc:
            if not is_no_space(exc):
                raise
            self._membership_unsaved = True
            self.disk.failed("term", self.membership_file.path)
            return
        self._membership_unsaved = False

    @property
    def replay_target(self) -> int:
        """The commit index recorded before the restart (see wait_local_replay)."""
        return self.engine.replay_target

    def _on_config_applied(self) -> None:
        """Tick thread: the replicated configuration changed (or a snapshot brought one)."""
        state = self.state
        me = self.addresses.raft
        voters = list(state.voters)
        if not voters or (self.forced and voters != [me]):
            return  # forced alone: the old configuration stays out until the reset is applied
        self.forced = False
        # Entries up to the saved configuration's index are history it already reflects (a
        # restart replays them): the saved, newest configuration stays in force meanwhile.
        # So is a learner's replay before its own admission: the history of other members.
        if state.applied_index <= self._config_floor or not self._past_admission():
            self.bridge.post(self.cluster_changes.fire)
            return
        self._store_membership()
        self._log_membership(sorted(voters), sorted(state.learners), state.applied_index)
        if self.engine.started:  # not while SyncObj's constructor replays the journal
            self.engine.set_other_voters([v for v in voters if v != me])
        standing = self.standing
        if me in voters and standing.learner:
            log.info("promoted to voter in cluster %s", state.cluster_id)
            self.timeline.record("membership", "this node was promoted to voter")
            standing.learner = False
            if not self.quarantine.active:
                standing.voting, standing.why = True, ""
            self.engine.become_voter()
        elif me not in voters and me not in state.learners and not standing.removed:
            log.warning("this node was removed from cluster %s", state.cluster_id)
            standing.removed, standing.voting, standing.why = True, False, "removed from the cluster"
        self.bridge.post(self.cluster_changes.fire)

    def _past_admission(self) -> bool:
        """Tick thread: does the configuration applied here speak of this node? Not always on a
        learner: it replays the cluster's whole history, whose voters may lack the members that
        joined since (the current leader among them: taken as its peers, they cut the learner off
        its leader), and in which an earlier node at its address may have been a learner, a voter,
        then removed (a disk replaced twice: read as its own, that history promoted the new node at
        once and then removed it). A learner goes by it from its admission on: the leader's
        applied index in the first hello of the leader that names this node a member (a learner,
        or already a voter), or the saved configuration's index after a restart."""
        if not self.standing.learner:
            return True
        if self._admitted_at is None:
            me = self.addresses.raft
            hello = self.engine.hellos().get(self.leader or "")
            if hello is None or not hello.replayed or (me not in hello.learners and me not in hello.voters):
                return False
            self._admitted_at = hello.applied
            log.info("admitted as a learner by %s at index %d; catching up", hello.addr, hello.applied)
        return self.applied_index >= self._admitted_at

    @property
    def admitted(self) -> bool:
        """A learner the leader has named a member (see _past_admission); any thread."""
        return self._admitted_at is not None

    def _log_membership(self, voters: list[str], learners: list[str], index: int) -> None:
        """Tick thread: one line when the voters or learners differ from the last ones logged."""
        if (voters, learners) != self._logged_membership:
            self._logged_membership = (voters, learners)
            log.info("membership at index %d: voters %s; learners %s", index, ",".join(voters),
                     ",".join(learners) or "none", extra={"index": index, "voters": voters, "learners": learners})
            self.timeline.record("membership", f"voters {', '.join(map(self._id, voters))}; learners "
                                               f"{', '.join(map(self._id, learners)) or 'none'}",
                                 index=index, voters=voters, learners=learners)

    def _on_told_removed(self) -> None:
        """Tick thread: our leader says a committed change removed us."""
        self.mark_removed("the leader says so")

    def mark_removed(self, why: str) -> None:
        """Any thread: this node is no longer a member."""
        if not self.standing.removed:
            log.warning("this node was removed from cluster %s (%s)", self.state.cluster_id, why)
            self.timeline.record("removed", f"this node was removed from the cluster ({why})")
            self.standing.removed, self.standing.voting, self.standing.why = True, False, "removed from the cluster"
            self.bridge.post(self.cluster_changes.fire)

    @property
    def removed(self) -> bool:
        return self.standing.removed

    def configuration(self) -> dict:
        """The replicated configuration as this node has applied it (Consul's operator view)."""
        state = self.state
        voters = list(state.voters) or self.peers()
        return {"cluster_id": state.cluster_id, "voters": voters, "learners": dict(state.learners),
                "members": dict(state.members), "index": state.applied_index}

    def hellos(self) -> dict:
        return self.engine.hellos()

    def transfer_leadership(self, target: str | None, callback) -> None:
        """Ask the engine to hand leadership to `target` (None: the most caught-up voter).
        `callback(ok: bool)` runs on the tick thread."""
        self.engine.transfer_leadership(target, callback)

    def _on_role_changed(self, old: Role, new: Role) -> None:
        """Tick thread. A leader that steps down (no majority heard within the step-down
        timeout, or a higher term seen) answers its writes and reads in flight at once."""
        if old is Role.LEADER and new is not Role.LEADER:
            self.proposer.abandon_in_flight("this node stopped being the leader while the request was in flight")
        if new is not old and new is Role.CANDIDATE:
            self.events.elections += 1
            self.timeline.record("election", "this node stood for election (no leader heard in time)")
        if new is not old and new is Role.LEADER:
            self.events.became_leader += 1
            self.timeline.record("became-leader", f"this node became the leader (term {self.term})", term=self.term)
        self.session_keeper.on_role_changed()
        self.bridge.post(self.cluster_changes.fire)

    # -- writes -------------------------------------------------------------------------------

    async def propose(self, op: Op, timeout_s: float, size_bytes: int = 0) -> OpResult:
        """Replicate `op` and return its result once committed and applied on this node."""
        self._refuse_if_stopping()
        self._refuse_if_disk_full()
        self._refuse_if_cluster_disks_full(await self.wait_for_leader(timeout_s))
        return await self.proposer.propose(op, timeout_s, size_bytes)

    def wait_local_replay(self, timeout_s: float) -> bool:
        """Block until the snapshot is loaded and the journal replayed up to the commit index
        known before the restart, so that no request sees a half-rebuilt store (main thread,
        before serving; the tick thread says when, see _watch_on_tick)."""
        return self._replayed.wait(timeout_s)

    async def barrier(self, timeout_s: float) -> None:
        """Return once every write committed before the call is applied on this node."""
        self._refuse_if_stopping()
        self._refuse_if_disk_full()
        self._refuse_if_cluster_disks_full(await self.wait_for_leader(timeout_s))
        await self.read_barrier.wait(timeout_s)

    async def _read_index_round(self, timeout_s: float) -> None:
        """One ReadIndex round (node.engine.read_index): returns once every entry committed
        before the call is applied here; no log entry, no fsync. The caller bounds the wait."""
        fut = asyncio.get_running_loop().create_future()

        def settle(error: Exception | None) -> None:  # on the loop
            if fut.done():
                return
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)

        self.engine.read_index(lambda error: self.bridge.post(settle, error))
        await fut

    async def drain_writes(self, timeout_s: float) -> bool:
        """Wait until no write is in flight or queued here (a graceful stop); False on timeout."""
        return bool(await wait_until(lambda: not self.proposer.in_flight, self.proposer.drained, timeout_s))

    def stop_taking_requests(self) -> None:
        """A graceful stop begins: new writes and strong reads are refused at once (clients
        move to another node), so the ones in flight can drain before leadership moves."""
        self.stopping = True
        self.engine.refuse_commands()

    def _refuse_if_stopping(self) -> None:
        if self.stopping:
            raise NotAppliedError("this node is stopping; send the request to another node")

    def _refuse_if_disk_full(self) -> None:
        """Answer at once what a full disk would only time out: this node's (507), then (once a
        leader is known, `_refuse_if_cluster_disks_full`) the leader's or a majority's as the
        leader hears them (503). Writes in flight when a disk fills are refused by the engine,
        or time out as "outcome unknown"."""
        if self.journal.full:
            raise DiskFullError(self.disk.reason())

    def _refuse_if_cluster_disks_full(self, leader: str | None) -> None:
        full = self.engine.peers_with_full_disks()
        if not full:
            return
        if leader in full:
            raise ClusterDiskFullError(f"cannot commit: the leader {self._name(leader)}: disk full")
        if self.is_leader:
            voters = self.peers()
            able = [v for v in voters if v not in full]
            if len(able) < len(voters) // 2 + 1:
                names = ", ".join(self._name(a) for a in full if a in voters)
                raise ClusterDiskFullError(f"cannot commit: disk full on a majority ({names})")

    def _name(self, raft_addr: str) -> str:
        return f"node {self._id(raft_addr)}"

    def _id(self, raft_addr: str) -> str:
        """The member's node id once it published one, else its Raft address."""
        return self.members().get(raft_addr, (raft_addr, ''))[0]

    async def wait_for_leader(self, timeout_s: float) -> str:
        leader = self.leader
        if leader is not None:  # every strong read and write asks: no coroutine when one is known
            return leader
        leader = await wait_until(lambda: self.leader, self.cluster_changes, timeout_s)
        if leader is None:
            raise NoLeaderError(f"no leader elected within {timeout_s:g}s")
        return leader

    def timeline_since(self, seq: int) -> list[dict]:
        return self.timeline.since(seq)

    async def wait_for_timeline(self, timeout_s: float) -> None:
        await self.ui_changes.wait(timeout_s)

    def snapshot_files(self) -> list[str]:
        return self.checkpointer.store.list()

    async def wait_for_cluster_change(self, timeout_s: float) -> None:
        """Return when the leader, its HTTP address, this node's role or the configuration
        changes, or after `timeout_s`."""
        await self.cluster_changes.wait(timeout_s)

    # -- reads --------------------------------------------------------------------------------

    async def prepare_read(self, consistency: Consistency, max_stale_s: float | None, timeout_s: float) -> ReadRoute:
        """Who answers a read (node.reads), after making this node fit to when it is this one."""
        if consistency is Consistency.STALE:
            if self.recovering and not self.ready:
                raise NotReadyError("this node lost its local state and is catching up from its peers")
            if max_stale_s is None:
                return ReadRoute.LOCAL
            last_contact = self.last_contact_ms
            if (last_contact is not None and last_contact <= max_stale_s * 1000) or self.is_leader:
                return ReadRoute.LOCAL
            return ReadRoute.LEADER
        if consistency is Consistency.DEFAULT:
            if self.leader is None:
                self._refuse_if_disk_full()  # a node that can store nothing takes no part in elections
            await self.wait_for_leader(timeout_s)
            if not self.is_leader:
                return ReadRoute.LEADER
        await self.barrier(timeout_s)  # which refuses a full disk first (a consistent read's case above)
        return ReadRoute.LOCAL

    def read_view(self) -> ReadView:
        return self.replica.read_view()

    async def wait_for_change(self, key: str, prefix: bool, timeout_s: float) -> None:
        await self.watch_hub.wait(key, prefix, timeout_s)

    # -- sessions (node/session_keeper.py) -----------------------------------------------------

    def session_renewed(self, session_id: str, ttl_ns: int) -> None:
        """The leader answered a renewal: the session's TTL timer starts again."""
        self.session_keeper.renew(session_id, ttl_ns)

    def lock_delay_left_s(self, key: str) -> float:
        return self.session_keeper.lock_delay_left_s(key)

    def _session_ttls(self) -> dict[str, int]:
        with self.replica.read_view() as view:
            return {sid: s.ttl_ns for sid, s in view.sessions().sessions.items() if s.ttl_ns}

    async def maintain_membership(self, stop: asyncio.Event) -> None:
        """Keep our HTTP address in the replicated member table (so peers can forward to us);
        on the leader, name a cluster formed from --peers and promote caught-up learners."""
        a = self.addresses
        while not stop.is_set():
            op: Op | None = None
            state = self.state
            if self.is_leader and self.forced:
                op = ConfigOp("reset", a.raft)
            elif self.is_leader and state.cluster_id is None and self.standing.voting:
                op = ClusterInitOp(uuid.uuid4().hex, tuple(self.peers()))
            elif self.is_leader and not self._changing and (learner := self._learner_to_promote()) is not None:
                with contextlib.suppress(Exception):
                    await self.change_config(ConfigOp("promote", learner), 2.0)
                continue
            elif (state.members.get(a.raft) != (a.node_id, a.http) and not self.standing.removed
                  and (not state.voters or a.raft in state.voters or a.raft in state.learners)):
                op = SetMemberOp(a.raft, a.http, a.node_id)
            if op is None:  # nothing to do until the cluster changes (or, at the latest, 0.5 s)
                await self.cluster_changes.wait(0.5)
                continue
            with contextlib.suppress(Exception):
                await self.propose(op, 2.0)
            await asyncio.sleep(0.2)

    async def change_config(self, op: ConfigOp, timeout_s: float) -> OpResult:
        """Propose one membership change; refused (MembershipBusyError) while another is in
        flight: with single-server changes, every two successive majorities overlap."""
        if self._changing:
            raise MembershipBusyError("another membership change is in progress; retry once it is applied")
        self._changing = True
        try:
            deadline = time.monotonic() + timeout_s
            # A cluster that has just formed names itself in its first entries (maintain_membership):
            # a change that arrives before them waits for them rather than being refused.
            if op.action != "reset":
                await wait_until(lambda: self.state.voters, self.cluster_changes, timeout_s)
            return await self.propose(op, max(0.1, deadline - time.monotonic()))
        finally:
            self._changing = False

    PROMOTE_WITHIN_ENTRIES = 16  # a learner this close to the commit index becomes a voter

    def _learner_to_promote(self) -> str | None:
        """A learner whose copy, as this leader's replication sees it right now, is within a
        few entries of the commit index (a hello's own figure is up to half a second old, and
        under load the commit index moves faster than that)."""
        commit = self.commit_index
        for addr in sorted(self.state.learners):
            hello = self.hellos().get(addr)
            if hello is None or not hello.replayed or time.monotonic() - hello.at > 2.0:
                continue
            if self.engine.replicated_index(addr) >= commit - self.PROMOTE_WITHIN_ENTRIES:
                return addr
        return None

    @property
    def state(self) -> KVStateMachine:
        return self.replica.state

    @property
    def is_leader(self) -> bool:
        return self.engine.is_leader

    @property
    def leader(self) -> str | None:
        """The leader's Raft address, or None when no leader was heard within an election timeout."""
        return self.engine.leader

    @property
    def term(self) -> int:
        return self.engine.term

    @property
    def commit_index(self) -> int:
        return self.engine.commit_index

    @property
    def applied_index(self) -> int:
        return self.engine.applied_index

    @property
    def uptime_ms(self) -> int:
        return int((time.monotonic() - self.started_at) * 1000)

    @property
    def last_contact_ms(self) -> int | None:
        """Milliseconds since the leader was last heard from; 0 on the leader; None if never."""
        return self.engine.last_contact_ms

    def leader_http(self) -> str | None:
        """The leader's advertised HTTP address, once it has published it."""
        leader = self.leader
        if leader is None:
            return None
        member = self.state.members.get(leader)
        return None if member is None else member[1]

    def members(self) -> dict[str, tuple[str, str]]:
        """raft address -> (node id, http address) for every member that published itself."""
        return dict(self.state.members)

    def unreachable_peers(self) -> list[str]:
        """Peers this node has no open Raft connection to right now."""
        return self.engine.unreachable_peers()

    async def report_unreachable_peers(self, stop: asyncio.Event, after_s: float = 10.0) -> None:
        """Log one line when a peer has been unreachable for `after_s`, and one when it is back."""
        down_since: dict[str, float] = {}
        reported: set[str] = set()
        while not stop.is_set():
            now = time.monotonic()
            down = set(self.unreachable_peers())
            for peer in down:
                down_since.setdefault(peer, now)
                if peer not in reported and now - down_since[peer] >= after_s:
                    log.warning("peer %s unreachable for %.0fs (not started yet, wrong address, or down?)",
                                peer, now - down_since[peer])
                    reported.add(peer)
            for peer in list(down_since):
                if peer not in down:
                    del down_since[peer]
                    if peer in reported:
                        log.warning("peer %s reachable again", peer)
                        reported.discard(peer)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    def peers(self) -> list[str]:
        """Every voter's Raft address (this node's included), as this node knows them."""
        voters = self.state.voters
        if voters:
            return list(voters)
        return self.peers_including_self(self.addresses)

    @staticmethod
    def peers_including_self(addresses: NodeAddresses) -> list[str]:
        return sorted({addresses.raft, *addresses.peers})

    @property
    def ready(self) -> bool:
        """True once this node has caught up with the leader's commit index."""
        return self.engine.ready

    async def snapshot_file(self, timeout_s: float) -> str:
        """A snapshot file reflecting every entry applied here now (taken if needed)."""
        return await self.checkpointer.snapshot_at_least(self.applied_index, self.engine.force_compaction,
                                                         self.snapshots_written, timeout_s)

    def status(self) -> dict:
        raft = self.engine.status()
        return {
            "id": self.addresses.node_id,
            "raft": self.addresses.raft,
            "http": self.addresses.http,
            "state": raft.role.value,
            "leader": self.leader,
            "term": raft.term,
            "commit_index": raft.commit_index,
            "applied_index": raft.applied_index,
            "log_len": raft.log_len,
            "last_contact_ms": self.last_contact_ms,
            "keys": len(self.state.entries),
            "synced_index": self.journal.synced_index,
            "proposals": {
                "entries": self.proposer.entries_proposed,
                "writes": self.proposer.ops_proposed,
            },
            # Linearizable reads (node.engine.read_index): rounds this node waited for (one serves
            # every read queued meanwhile), and the ReadIndex rounds it led as leader.
            "reads": {
                "linearizable": self.read_barrier.reads,
                "rounds": self.read_barrier.rounds,
                "led_rounds": self.engine.read_index_rounds()[0],
                "led_confirmed": self.engine.read_index_rounds()[1],
                "asks_at_once": self.engine.read_index_rounds()[2],
            },
            "watchers": self.watch_hub.waiting,
            "sessions": {"timers": self.session_keeper.timer_count(),
                         "invalidated": self.session_keeper.invalidations},
            "recovering": self.recovering and not self.ready,
            "disk": {"full": self.disk.full, "failing": self.disk.failing(),
                     "reason": self.disk.reason() if self.disk.full else None,
                     "peers_full": self.engine.peers_with_full_disks()},
            "voting": self.standing.voting,
            "learner": self.standing.learner,
            "standing": self.standing.why,
            "cluster_id": self.state.cluster_id,
            "snapshots": {
                "taken": self.checkpointer.snapshots_taken,
                "failed": self.checkpointer.failures,
                "last_duration_s": self.checkpointer.last_duration_s,
                "last_capture_pause_ms": self.checkpointer.last_capture_pause_ms,
                "newest": [os.path.basename(p) for p in self.checkpointer.store.list()[:1]],
                "loaded_index": self.checkpointer.last_index,  # last snapshot loaded (start-up or leader)
            },
        }

    def metrics(self) -> NodeMetrics:
        """What api/metrics.py exports: state read now (cheap reads, no locks) and the counts."""
        last_contact = self.last_contact_ms
        proposer, checkpointer, journal = self.proposer, self.checkpointer, self.journal
        merged_entries, merged_batches = self.engine.merged_entries
        return NodeMetrics(
            node_id=self.addresses.node_id,
            is_leader=self.is_leader,
            has_leader=self.leader is not None,
            term=self.term,
            commit_index=self.commit_index,
            applied_index=self.applied_index,
            last_index=journal.last_index,
            last_contact_s=None if last_contact is None else last_contact / 1000,
            follower_match_index=self.engine.follower_match_indexes(),
            blocking_queries=self.watch_hub.waiting,
            proposals_pending=proposer.in_flight,
            events=self.events,
            entries_appended=journal.entries_appended,
            entries_proposed=proposer.entries_proposed,
            writes_proposed=proposer.ops_proposed,
            journal_bytes_written=journal.bytes_written,
            fsync_seconds=journal.fsync_seconds,
            writes_per_entry=proposer.writes_per_entry,
            merged_entries=merged_entries,
            merged_batches=merged_batches,
            barrier_rounds=self.read_barrier.rounds,
            barrier_reads=self.read_barrier.reads,
            reads_per_barrier=self.read_barrier.reads_per_round,
            snapshots_taken=checkpointer.snapshots_taken,
            snapshot_failures=checkpointer.failures,
            snapshot_seconds=checkpointer.durations_s,
            snapshot_capture_pause_seconds=checkpointer.capture_pauses_s,
            snapshot_last_size_bytes=checkpointer.last_size_bytes,
        )

    def close(self) -> None:
        """Stop Raft and flush the journal. Call from the thread that constructed the node."""
        self.engine.close()

