"""A raftkv node: the Raft engine (PySyncObj behind node.engine) + the KV state machine.

Composition and lifecycle only; the pieces live in their own modules:
  codec / state_machine  what the log means (pure)
  replica                this node's copy of the state, as the engine applies and installs it
  engine/                PySyncObj 0.3.17 with our journal, transport and compaction seams
  proposer               batching writes into log entries, the loop <-> tick-thread bridge
  settings               timing and storage choices

Threading: construct and `close()` from the main thread (PySyncObj's tick thread exits when
the thread that built it exits). Everything else here is called from the asyncio loop;
the state machine is mutated only on the tick thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field

from node.checkpoint import Checkpointer
from node.codec import ClusterInitOp, ConfigOp, Op, SetMemberOp
from node.engine import CompactionHooks, DurableJournal, JournalError, RaftEngine, Role, check_version
from node.errors import MembershipBusyError, NoLeaderError, NotAppliedError, StartupError
from node.membership import MembershipFile, Quarantine, Standing, fresh_verdict, is_fresh
from node.proposer import Proposer, ReadBarrier
from node.replica import Replica
from node.settings import DUMP_FILE, JOURNAL_FILE, SNAPSHOT_DIR, RaftSettings
from node.state_machine import KVStateMachine, OpResult
from node.watch import WatchHub
from snapshots.store import SnapshotStore

log = logging.getLogger(__name__)


@dataclass
class NodeAddresses:
    node_id: str
    raft: str  # advertised Raft address: the node's identity in the cluster
    http: str  # advertised HTTP address, published to peers for forwarding
    raft_bind: str | None = None  # defaults to `raft`
    peers: list[str] = field(default_factory=list)  # the other nodes' advertised Raft addresses


class RaftNode:
    def __init__(
        self,
        addresses: NodeAddresses,
        data_dir: str,
        settings: RaftSettings | None = None,
        *,
        join_voters: list[str] | None = None,
        force_new_cluster: bool = False,
        on_sync=None,
        on_ack=None,
    ) -> None:
        """`join_voters`: this node joins an existing cluster whose voters these are (it
        starts as a learner); None: it is (or forms) a cluster from `addresses.peers`.
        `force_new_cluster`: the survivor of a majority lost for good restarts alone, as the
        only voter of its cluster (its data is all there is; writes it lacked are lost)."""
        check_version()
        self.addresses = addresses
        self.data_dir = data_dir
        self.settings = settings or RaftSettings()
        self.watch_hub = WatchHub()
        self.replica = Replica(self.watch_hub, self._on_config_applied)
        self.fresh = is_fresh(data_dir, JOURNAL_FILE, SNAPSHOT_DIR)
        _prepare_data_dir(data_dir, addresses)
        self.membership_file = MembershipFile(data_dir)
        self.standing = Standing()
        self._changing = False
        self.stopping = False
        self._seen_as_learner = False
        self.forced = force_new_cluster
        self.quarantine: Quarantine | None = None
        if force_new_cluster:
            if self.fresh:
                raise StartupError("--force-new-cluster needs this node's own data; the folder is empty")
            saved = self.membership_file.load() or {"cluster_id": None}
            self.membership_file.store(saved["cluster_id"], [addresses.raft], {}, 0)
            log.warning("forcing a new cluster: %s is its only voter; the other members are dropped", addresses.raft)
        saved = self.membership_file.load()
        self._config_floor = saved["index"] if saved else 0  # see _on_config_applied
        other_nodes = self._plan_membership(join_voters)
        bind = addresses.raft_bind or addresses.raft
        _check_port_free(bind, "raft")
        journal_path, dump_path = os.path.join(data_dir, JOURNAL_FILE), os.path.join(data_dir, DUMP_FILE)
        self.checkpointer = Checkpointer(
            dump_path, SnapshotStore(os.path.join(data_dir, SNAPSHOT_DIR), self.settings.snapshot_retain),
            addresses.raft, sorted({addresses.raft, *other_nodes}), self.replica.install,
            alone=force_new_cluster,
        )
        self.checkpointer.bind_state(lambda: self.replica.state)
        self.recovering = False
        try:
            meta_existed = os.path.exists(journal_path + ".meta")
            self.journal = DurableJournal(journal_path, dump_path, on_sync=on_sync)
            term_before = self.journal.current_term
            first = self.journal.first_index if self.journal.first_index is not None else 1
            rebuildable, snapshot = self.checkpointer.prepare_startup(first)
            if snapshot is not None and self.journal.current_term < snapshot.term:
                # A snapshot restored offline carries its term; ours must never be below it.
                self.journal.start_term(snapshot.term)
            if self.journal.damage is not None:
                d = self.journal.damage
                self.quarantine = Quarantine(f"journal damaged ({d.reason})", max(term_before, d.high_term),
                                             d.high_index, d.high_term)
            elif self.journal.last_entry is not None and not meta_existed:
                last = self.journal.last_entry
                # The log is whole, the vote is not: only a newer term than the log shows cures it.
                self.quarantine = Quarantine("the journal's term and vote file is missing", last[2])
            if not rebuildable:
                # No snapshot to rebuild the state from, and a journal that starts after index 1.
                last = self.journal.last_entry or (b"", 0, 0)
                self.journal.close()
                broken = f"{journal_path}.{int(time.time())}.broken"
                os.replace(journal_path, broken)
                log.error("no usable snapshot and the journal starts at index %d: moved it aside to %s; "
                          "recovering the state from the peers", first, os.path.basename(broken))
                self.journal = DurableJournal(journal_path, dump_path, on_sync=on_sync)
                self.recovering = True
                self.quarantine = Quarantine("no usable snapshot (journal set aside)", max(term_before, last[2]),
                                             last[1], last[2])
        except (JournalError, OSError) as exc:
            raise StartupError(str(exc)) from None
        if self.quarantine is not None:
            self.standing.voting = False
            self.standing.why = f"quarantined: {self.quarantine.reason}"
            log.warning("not voting until this node holds again what it may have acknowledged: %s",
                        self.quarantine.reason)
        self.engine = RaftEngine(
            addresses.raft, other_nodes, bind=bind, data_dir=data_dir, settings=self.settings,
            journal=self.journal, standing=self.standing, compaction=CompactionHooks(self.checkpointer),
            apply_entry=self.replica.apply, membership_hello=self._membership_hello,
            on_role_changed=self._on_role_changed, on_removed=self._on_told_removed, on_ack=on_ack,
        )
        # Before the engine starts: its role-change callback may already reach the proposer.
        self.proposer = Proposer(self.engine.submit)
        self.read_barrier = ReadBarrier(self.proposer)
        self.engine.start()
        if self.quarantine is not None:
            self.engine.add_tick_callback(self._check_quarantine)
        self.started_at = time.monotonic()

    # -- membership ---------------------------------------------------------------------------

    def _plan_membership(self, join_voters: list[str] | None) -> list[str]:
        """The other voters to start with, and this node's standing among them."""
        a = self.addresses
        saved = self.membership_file.load()
        if saved is not None and saved["voters"]:
            if a.raft in saved["learners"]:
                self.standing.learner, self.standing.voting = True, False
                self.standing.why = "learner: catching up before it becomes a voter"
            elif a.raft not in saved["voters"]:
                raise StartupError(
                    f"this node ({a.raft}) was removed from cluster {saved['cluster_id']}; to add it again, start it "
                    f"with an empty data folder and --join <a member's HTTP address>")
            if join_voters is not None:
                log.info("--join ignored: this node's data folder already holds its membership")
            return [v for v in saved["voters"] if v != a.raft]
        if join_voters is not None:
            if not self.fresh:
                raise StartupError(f"--join needs an empty data folder; {self.data_dir} holds another node's data")
            self.standing.learner, self.standing.voting = True, False
            self.standing.why = "learner: catching up before it becomes a voter"
            return [v for v in join_voters if v != a.raft]
        if self.fresh:
            # Probation: no vote and no entry until the peers say this cluster is new (admit()).
            self.standing.voting = self.standing.accepting = False
            self.standing.why = "new node: asking the peers whether the cluster exists"
        return [p for p in a.peers if p != a.raft]

    def admit(self, timeout_s: float = 3600.0) -> None:
        """Block (main thread, before serving) until a fresh node may take part: its peers
        confirm the cluster is new. Raises StartupError with the one line to show otherwise."""
        if self.standing.accepting:
            return
        started = time.monotonic()
        next_report = started + 10
        while True:
            verdict, detail = fresh_verdict(self.addresses.raft, self.addresses.node_id,
                                            [p for p in self.addresses.peers if p != self.addresses.raft],
                                            self.engine.hellos(), time.monotonic() - started)
            if verdict == "refuse":
                raise StartupError(detail)
            if verdict == "form":
                log.info("new cluster: %s", detail)
                # Should this node have voted before it lost its folder, it did so in a term no
                # higher than its peers have seen: it sits those terms out.
                seen = max((h.term for h in self.engine.hellos().values()), default=0)
                if seen > self.engine.term:
                    self.engine.sit_out_terms_up_to(seen)
                self.standing.voting = self.standing.accepting = True
                self.standing.why = ""
                return
            if time.monotonic() >= next_report:
                log.info("new node: waiting for %s to say whether the cluster exists", detail)
                next_report += 10
            if time.monotonic() - started > timeout_s:
                raise StartupError(f"no answer from {detail} within {timeout_s:g}s")
            time.sleep(0.02)

    def _membership_hello(self) -> dict:
        """Tick thread: the part of this node's hello to its peers that membership decides on."""
        state = self.state
        return {
            "cluster": state.cluster_id,
            "members": sorted(state.members),
            "voters": list(state.voters),
            "learners": sorted(state.learners),
        }

    @property
    def replay_target(self) -> int:
        """The commit index recorded before the restart (see wait_local_replay)."""
        return self.engine.replay_target

    def _check_quarantine(self) -> None:
        """Tick callback while quarantined."""
        q = self.quarantine
        if q is None or self.standing.voting:
            return
        applied = self.applied_index
        if q.cured(applied, self.journal.entry_term(applied), self.journal.entry_term(q.high_index)):
            log.warning("quarantine over: applied index %d (term %s) from the leader; voting again",
                        applied, self.journal.entry_term(applied))
            self.quarantine = None
            # A node that lost its log (or its vote file) may have voted in this term already.
            self.engine.record_no_vote(self.engine.term)
            if not (self.standing.learner or self.standing.removed):
                self.standing.voting = True
                self.standing.why = ""

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
        replaying = state.applied_index <= self._config_floor
        if not replaying:
            self.membership_file.store(state.cluster_id, voters, dict(state.learners), state.applied_index)
            if self.engine.started:  # not while SyncObj's constructor replays the journal
                self.engine.set_other_voters([v for v in voters if v != me])
        standing = self.standing
        if standing.learner and me in state.learners:
            self._seen_as_learner = True
        # A learner replays the cluster's whole history, in which an earlier node at its
        # address may have been a voter and removed: only changes after its own admission count.
        current = not standing.learner or self._seen_as_learner
        if me in voters and standing.learner and self._seen_as_learner:
            log.info("promoted to voter in cluster %s", state.cluster_id)
            standing.learner = False
            if self.quarantine is None:
                standing.voting, standing.why = True, ""
            self.engine.become_voter()
        elif current and me not in voters and me not in state.learners and not standing.removed and not replaying:
            log.warning("this node was removed from cluster %s", state.cluster_id)
            standing.removed, standing.voting, standing.why = True, False, "removed from the cluster"

    def _on_told_removed(self) -> None:
        """Tick thread: our leader says a committed change removed us."""
        self.mark_removed("the leader says so")

    def mark_removed(self, why: str) -> None:
        if not self.standing.removed:
            log.warning("this node was removed from cluster %s (%s)", self.state.cluster_id, why)
            self.standing.removed, self.standing.voting, self.standing.why = True, False, "removed from the cluster"

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

    # -- writes -------------------------------------------------------------------------------

    async def propose(self, op: Op, timeout_s: float, size_bytes: int = 0) -> OpResult:
        """Replicate `op` and return its result once committed and applied on this node."""
        self._refuse_if_stopping()
        await self.wait_for_leader(timeout_s)
        return await self.proposer.propose(op, timeout_s, size_bytes)

    def wait_local_replay(self, timeout_s: float) -> bool:
        """Block until the snapshot is loaded and the journal replayed up to the commit index
        known before the restart, so that no request sees a half-rebuilt store."""
        deadline = time.monotonic() + timeout_s
        while self.applied_index < self.replay_target:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    async def barrier(self, timeout_s: float) -> None:
        """Return once every write committed before the call is applied on this node."""
        self._refuse_if_stopping()
        await self.wait_for_leader(timeout_s)
        await self.read_barrier.wait(timeout_s)

    def stop_taking_requests(self) -> None:
        """A graceful stop begins: new writes and strong reads are refused at once (clients
        move to another node), so the ones in flight can drain before leadership moves."""
        self.stopping = True
        self.engine.refuse_commands()

    def _refuse_if_stopping(self) -> None:
        if self.stopping:
            raise NotAppliedError("this node is stopping; send the request to another node")

    async def wait_for_leader(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            leader = self.leader
            if leader is not None:
                return leader
            if time.monotonic() >= deadline:
                raise NoLeaderError(f"no leader elected within {timeout_s:g}s")
            await asyncio.sleep(0.02)

    async def maintain_membership(self, stop: asyncio.Event) -> None:
        """Keep our HTTP address in the replicated member table (so peers can forward to us);
        on the leader, name a cluster formed from --peers and promote caught-up learners."""
        a = self.addresses
        while not stop.is_set():
            op = None
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
            if op is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
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
            while not self.state.voters and op.action != "reset" and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
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
                                                         timeout_s)

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
                "read_barriers": self.proposer.barriers_proposed,
                "barrier_rounds": self.proposer.barrier_entries,
                "reads_served_by_barriers": self.read_barrier.reads,
            },
            "watchers": self.watch_hub.waiting,
            "recovering": self.recovering and not self.ready,
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

    def close(self) -> None:
        """Stop Raft and flush the journal. Call from the thread that constructed the node."""
        self.engine.close()


def _prepare_data_dir(data_dir: str, addresses: NodeAddresses) -> None:
    """Create the data folder and check that it belongs to this node."""
    try:
        os.makedirs(data_dir, exist_ok=True)
        probe = os.path.join(data_dir, ".write-test")
        with open(probe, "wb") as f:
            f.write(b"ok")
        os.unlink(probe)
    except OSError as exc:
        raise StartupError(f"data folder {data_dir} is not writable: {exc.strerror}") from None
    identity_path = os.path.join(data_dir, "node-identity")
    identity = f"{addresses.node_id} {addresses.raft}\n"
    if os.path.exists(identity_path):
        with open(identity_path) as f:
            existing = f.read()
        if existing != identity:
            old = existing.split()
            raise StartupError(
                f"data folder {data_dir} belongs to node {old[0]} at {old[1]}, not "
                f"{addresses.node_id} at {addresses.raft} (Raft identity is the address)"
            )
    else:
        from snapshots.fsutil import write_atomic

        write_atomic(identity_path, identity.encode())


def _check_port_free(addr: str, what: str) -> None:
    host, _, port = addr.rpartition(":")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (socket.gaierror, ValueError) as exc:
        raise StartupError(f"cannot resolve {what} address {addr}: {exc}") from None
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(sockaddr)
        except OSError as exc:
            raise StartupError(f"cannot listen on {what} address {addr}: {exc.strerror}") from None
