"""RaftEngine: this node's PySyncObj peer, behind named methods.

It composes PySyncObj's SyncObj with our journal (node.engine.journal, installed through
node.engine.journal_seam), our transport (node.engine.transport), our compaction hooks
(node.engine.compaction) and one replicated entry point (node.engine.replicated), and
translates what PySyncObj reports into our types: `Role`, `EngineStatus`, node.errors.

Lifecycle: construct (nothing runs yet), `start()` from the main thread (PySyncObj's tick
thread exits when the thread that built it exits), `close()` from the same thread.

Threading: properties and `submit` may be called from any thread (the event loop, mostly);
methods documented "tick thread" must run on PySyncObj's tick thread: from a tick callback,
an apply or a PySyncObj callback, or through `on_tick_thread`. The callbacks given to the
constructor (`apply_entry`, `on_role_changed`, `on_removed`, the observer's) run on the tick thread.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

from pysyncobj import SyncObj

from node.disk import NoSpaceError
from node.engine import internals, resolver, wire
from node.engine.compaction import CompactionHooks
from node.engine.conf import syncobj_conf
from node.engine.failures import SUCCESS, error_for
from node.engine.journal import DurableJournal
from node.engine.journal_seam import journal_installed
from node.engine.merge import EntryMerger
from node.engine.observer import DurabilityObserver
from node.engine.peer_auth import Keyring
from node.engine.read_index import ReadIndex
from node.engine.replicated import ApplyEntry, ReplicatedLog
from node.engine.status import EngineStatus, Role, role_of
from node.engine.transport import DurableTransport
from node.errors import DiskFullError, StartupError
from node.membership import PeerHello, Standing
from node.settings import RaftSettings

# (results, error): error is None on success, else a node.errors exception
OnDone = Callable[[object, Exception | None], None]

log = logging.getLogger(__name__)

HANDOVER_RETRY_S = 1.0  # a leader whose disk is full tries to hand over this often
# ... once it has been full this long: disks of the same size filling together (a common case)
# must first say so in their hellos, or the leader would hand over to one that cannot stand.
HANDOVER_AFTER_S = 2.0
HELLO_FRESH_S = 3.0  # a peer's word on its disk counts for this long


class _DiskFullLogFilter(logging.Filter):
    """PySyncObj logs a traceback for an append that met a full disk (it escapes its tick) and a
    warning for each failed snapshot attempt; node.disk already reports both, once a minute."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, NoSpaceError) and record.getMessage() != "Failed to store full dump"


_DISK_FULL_LOG_FILTER = _DiskFullLogFilter()


class RaftEngine:
    def __init__(
        self,
        self_addr: str,
        other_voters: list[str],
        *,
        bind: str,
        data_dir: str,
        settings: RaftSettings,
        journal: DurableJournal,
        standing: Standing,
        compaction: CompactionHooks,
        apply_entry: ApplyEntry,
        membership_hello: Callable[[], dict],
        on_role_changed: Callable[[Role, Role], None],
        on_removed: Callable[[], None],
        observer: DurabilityObserver | None = None,
    ) -> None:
        """`membership_hello()`: this node's cluster id and configuration, for its hello to peers
        (node.membership.PeerHello). `on_removed()`: our leader says a committed change removed
        us. `observer`: sees acknowledgements (the journal, built with it, sees the syncs)."""
        self.self_addr = self_addr
        self.journal = journal
        self.standing = standing
        self._other_voters = other_voters
        self._bind = bind
        self._data_dir = data_dir
        self._settings = settings
        self._compaction = compaction
        self._log = ReplicatedLog(apply_entry)
        self._membership_hello = membership_hello
        self._on_role_changed = on_role_changed
        self._on_removed = on_removed
        self._on_ack = observer.acknowledged if observer is not None else None
        # The commit index recorded before the restart: entries up to it are replayed locally
        # before the node answers anything (RaftNode.wait_local_replay).
        self.replay_target = journal.commit_index_hint
        self._tick_calls: collections.deque = collections.deque()
        self._syncobj: SyncObj | None = None  # set once SyncObj's constructor has returned
        self._transport: DurableTransport | None = None  # set during that constructor
        self._read_index: ReadIndex | None = None  # set once SyncObj is built
        self._merger: EntryMerger | None = None  # set with the transport
        self._next_handover = 0.0
        self._full_since: float | None = None
        self._handover_logged = False

    def start(self) -> None:
        """Main thread: build and start the PySyncObj peer (its tick thread starts replaying the
        journal at once). StartupError if it cannot listen on its Raft address."""
        # Before the first connection: nothing from a peer is ever unpickled, no frame is too big,
        # and with a secret nothing unproven is even decoded (NOTES.md, "The wire").
        logging.getLogger("pysyncobj.syncobj").addFilter(_DISK_FULL_LOG_FILTER)  # idempotent
        secrets = self._settings.cluster_secrets
        wire.install(wire.WireLimits.for_entries(self._settings.max_entry_bytes),
                     Keyring(secrets) if secrets else None)
        # Peers' names are looked up off the tick thread and kept briefly (node.engine.resolver);
        # the bind host now, as PySyncObj binds it in the constructor.
        names = resolver.install()
        bind_host = self._bind.rpartition(":")[0]
        if bind_host != "0.0.0.0" and not names.prime(bind_host):
            raise StartupError(f"cannot listen on raft address {self._bind}: host {bind_host!r} does not resolve")
        # The journal syncs in a thread of its own; each sync that makes more entries durable wakes
        # the tick thread (a follower's acknowledgements, the leader's commit: NOTES.md, "Durability").
        self.journal.start_syncing(self._journal_synced)
        with journal_installed(self.journal):
            syncobj = SyncObj(
                self.self_addr,
                self._other_voters,
                conf=syncobj_conf(self._settings, self._data_dir, self._bind, self._compaction,
                                  self._state_changed),
                consumers=[self._log],
                transportClass=self._make_transport,
            )
        internals.on_wake(syncobj, self._tr.send_synced_acks)  # before `_syncobj` lets the sync thread wake it
        self._syncobj = syncobj
        self._read_index = ReadIndex(syncobj, self._tr.send_read_index)
        self._tr.read_index = self._read_index
        if not syncobj.tick_thread_alive():
            raise StartupError(f"cannot listen on raft address {self._bind}")
        # PySyncObj runs tick callbacks after it appended and sent this tick's entries and before
        # it polls (NOTES.md, "Tick order"); ours run in this order:
        # 1. acknowledgements that completed syncs now cover (normally sent as soon as the sync
        #    thread wakes the tick thread; this is the fallback);
        # 2. the hello on every link, and no election while we may not vote;
        # 3. what other threads asked to run here;
        # 4. ReadIndex reads: new ones queued, rounds started or retried, reads answered once applied;
        # 5. a term that could not be stored is forgotten; a leader whose disk is full hands over
        #    to a peer whose disk is not;
        # 6. a leader that is its only voter wakes its own poll (`_commit_alone`).
        for callback in self._tick_callbacks():
            syncobj.addOnTickCallback(callback)

    def _tick_callbacks(self) -> list[Callable[[], object]]:
        return [self._tr.send_synced_acks, self._tr.keep_alive, self._run_tick_calls, self._ri.tick, self._disk_upkeep,
                self._commit_alone]

    def _commit_alone(self) -> None:
        """Tick callback: a leader with no other voter commits what its syncs cover at the next
        tick's commit computation; no peer's answer wakes its poll, so every write waited out a
        whole tick period (51 ms at `heartbeat_s` 0.05). The sync thread wakes the tick thread
        when a sync completes; this covers a sync that completed before this tick's commit
        computation saw it. With peers, their acknowledgements wake the poll and this does nothing."""
        syncobj = self._so
        if (not internals.other_voters(syncobj) and internals.is_leader(syncobj)
                and syncobj.raftCommitIndex < min(internals.last_log_index(syncobj), self.journal.synced_index)):
            internals.wake(syncobj)

    def _make_transport(self, syncobj, self_node, other_nodes) -> DurableTransport:
        # Called by SyncObj's constructor, before its tick thread starts: the leader's commit
        # computation never counts an unsynced own copy, from the first tick on.
        internals.count_own_copy_up_to(syncobj, lambda: self.journal.synced_index)
        internals.wake_at_election_deadline(syncobj)
        self._transport = DurableTransport(syncobj, self_node, other_nodes, journal=self.journal,
                                           standing=self.standing, hello=self._hello, on_ack=self._on_ack,
                                           on_removed=self._on_removed)
        # The leader appends the batches queued in one tick as one entry (node.engine.merge).
        merger = self._merger = self._transport.merger = EntryMerger(syncobj, self._transport.send,
                                                                     lambda: self.journal.full)
        internals.check_commands_with(syncobj, merger.check_commands)
        return self._transport

    def _journal_synced(self) -> None:
        """The journal's sync thread: more entries are durable; wake the tick thread if that
        lets it act (DurableTransport.sync_completed). Before SyncObj's constructor has returned
        there is no pipe to wake it with yet: the tick callbacks send what is covered."""
        transport = self._transport
        if transport is not None and self._syncobj is not None:
            transport.sync_completed()

    @property
    def _so(self) -> SyncObj:
        """The SyncObj, once built (every use below comes after `start`)."""
        if self._syncobj is None:
            raise RuntimeError("the Raft engine is not started")
        return self._syncobj

    @property
    def _tr(self) -> DurableTransport:
        if self._transport is None:
            raise RuntimeError("the Raft engine has no transport yet")
        return self._transport

    @property
    def _ri(self) -> ReadIndex:
        if self._read_index is None:
            raise RuntimeError("the Raft engine is not started")
        return self._read_index

    @property
    def started(self) -> bool:
        """SyncObj's constructor has returned (its tick thread may run before: a replay, a hello)."""
        return self._syncobj is not None

    def close(self) -> None:
        """Stop Raft and flush the journal. Call from the thread that called `start()`."""
        self._so.destroy_synchronous()

    # -- writes -------------------------------------------------------------------------------

    def submit(self, payload: bytes, on_done: OnDone) -> None:
        """Propose one log entry. `on_done(results, error)` runs once on the tick thread (or
        inline, when PySyncObj's queue is full); `results` are what `apply_entry` returned."""
        if self.journal.full:  # it could not be appended here (node.disk)
            on_done(None, DiskFullError(self.journal.disk.reason()))
            return

        def callback(results, fail_reason: int) -> None:
            on_done(results, None if fail_reason == SUCCESS else error_for(fail_reason))
        self._log.apply(payload, callback=callback)

    # -- reads ---------------------------------------------------------------------------------

    def read_index(self, on_read: Callable[[Exception | None], None]) -> None:
        """Any thread: `on_read(None)` on the tick thread once this node has applied every entry
        committed before the call, confirmed with a majority without a log entry
        (node.engine.read_index), or `on_read(error)` (node.errors.NoLeaderError)."""
        self._ri.request(on_read)

    @property
    def merged_entries(self) -> tuple[int, int]:
        """Entries this node appended as leader that merged two batches or more, and those batches."""
        merger = self._merger
        return (merger.entries_merged, merger.batches_merged) if merger is not None else (0, 0)

    def read_index_rounds(self) -> tuple[int, int, int]:
        """ReadIndex rounds this node started as leader, those a majority confirmed, and the
        followers' asks it answered without a round."""
        ri = self._read_index
        return (ri.rounds, ri.confirmed, ri.asks_at_once) if ri is not None else (0, 0, 0)

    # -- what this node knows -------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return internals.is_leader(self._so)

    @property
    def leader(self) -> str | None:
        """The leader's Raft address, or None when no leader was heard within an election timeout.

        PySyncObj keeps its last leader until it starts an election, and a node connected to no
        peer never starts one: a lone survivor would name a dead leader forever.
        """
        node = internals.last_known_leader(self._so)
        if node is None:
            return None
        if not self.is_leader:
            last_contact = self.last_contact_ms
            if last_contact is None or last_contact > self._settings.election_max_s * 1000:
                return None
        return node.address

    @property
    def last_contact_ms(self) -> int | None:
        """Milliseconds since the leader was last heard from; 0 on the leader; None if never."""
        if self.is_leader:
            return 0
        transport = self._transport
        if transport is None or transport.last_leader_contact == 0.0:
            return None
        return int((time.monotonic() - transport.last_leader_contact) * 1000)

    @property
    def term(self) -> int:
        return self._so.raftCurrentTerm

    @property
    def commit_index(self) -> int:
        return self._so.raftCommitIndex

    @property
    def applied_index(self) -> int:
        return self._so.raftLastApplied

    @property
    def ready(self) -> bool:
        """True once this node has caught up with the leader's commit index (PySyncObj's isReady)."""
        return self._so.isReady()

    def status(self) -> EngineStatus:
        return EngineStatus.from_pysyncobj(self._so.getStatus())

    def unreachable_peers(self) -> list[str]:
        """Voters this node has no open Raft connection to right now."""
        return list(self.status().unreachable_peers)

    def hellos(self) -> dict[str, PeerHello]:
        """Peer Raft address -> the last hello it sent us."""
        return dict(self._transport.hellos) if self._transport is not None else {}

    def replicated_index(self, addr: str) -> int:
        """Leader: the highest index its replication knows `addr` (a voter or a learner) holds."""
        link = self._tr.hello_links.get(addr)  # a learner's link is a 'readonly' Node
        return internals.match_indexes(self._so).get(link, 0)

    def _hello(self) -> dict:
        """This node's hello (node.membership.PeerHello), sent by the transport on every link."""
        started = self.started
        applied = self.applied_index if started else 0
        return {
            "from": self.self_addr,
            **self._membership_hello(),
            "replayed": started and applied >= self.replay_target,
            "applied": applied,
            "term": self.term if started else 0,
            "disk_full": self.journal.full,
        }

    def follower_match_indexes(self) -> dict[str, int]:
        """Leader: every other voter's and learner's Raft address -> the highest index its
        replication knows is there ({} on a follower). Any thread: PySyncObj's dicts are copied
        while the tick thread may change them, so a copy that raced it is retried."""
        if not self.is_leader:
            return {}
        for _attempt in range(3):
            try:
                matched = dict(internals.match_indexes(self._so))
                found = {node.address: matched.get(node, 0) for node in list(internals.other_voters(self._so))}
                for addr, link in list(self._tr.hello_links.items()):  # a learner's link is a 'readonly' Node
                    if addr not in found and link in matched:
                        found[addr] = matched[link]
                return found
            except RuntimeError:  # "dictionary changed size during iteration"
                continue
        return {}

    def peers_with_full_disks(self) -> list[str]:
        """Peers whose last hello, heard within HELLO_FRESH_S, says their disk takes no entry."""
        now = time.monotonic()
        return sorted(a for a, h in self.hellos().items() if h.disk_full and now - h.at <= HELLO_FRESH_S)

    # -- changes ------------------------------------------------------------------------------

    def set_other_voters(self, addresses: list[str]) -> None:
        """Tick thread: make `addresses` the other voters. A removed voter never hears of the
        commit that removed it (the leader stops sending to it at once), so the leader tells
        it before the link goes."""
        syncobj = self._so
        if internals.is_leader(syncobj):
            for node in internals.other_voters(syncobj):
                if node.address not in addresses:
                    self._tr.tell_removed(node)
        internals.set_other_voters(syncobj, addresses)

    def record_no_vote(self, term: int) -> None:
        """Tick thread: make `term` current with a vote for no one: this node grants no vote in it."""
        internals.record_no_vote(self._so, term)

    def sit_out_terms_up_to(self, term: int) -> None:
        """Not on the tick thread: `record_no_vote(term)` there, and wait until it has run."""
        self.on_tick_thread(lambda: self.record_no_vote(term))
        while self._tick_calls:
            time.sleep(0.005)

    def become_voter(self) -> None:
        """Tick thread: a learner just promoted connects to its peers as a voter."""
        if self._transport is not None:
            self._tr.become_voter()

    def refuse_commands(self) -> None:
        """A graceful stop begins: as leader, take no more entries forwarded by followers."""
        if self._transport is not None:
            self._tr.refuse_commands = True

    def transfer_leadership(self, target: str | None, callback: Callable[[bool], None]) -> None:
        """Ask PySyncObj to hand leadership to `target` (None: the most caught-up voter).
        `callback(ok: bool)` runs on the tick thread; ok only means the request was sent."""
        def done(_result, fail_reason: int) -> None:
            callback(fail_reason == SUCCESS)
        self.on_tick_thread(lambda: self._so.transferLeadership(target, done))

    def force_compaction(self) -> None:
        """Take a snapshot at the next tick, however short the log."""
        self._so.forceLogCompaction()

    # -- the tick thread ----------------------------------------------------------------------

    def add_tick_callback(self, callback: Callable[[], None]) -> None:
        """Run `callback` on every tick, after the engine's own (see `start`)."""
        self._so.addOnTickCallback(callback)

    def on_tick_thread(self, fn: Callable[[], None]) -> None:
        """Run `fn` on PySyncObj's tick thread at its next tick: what sends on its sockets or
        writes its term must not race the tick thread."""
        self._tick_calls.append(fn)

    def _run_tick_calls(self) -> None:
        while self._tick_calls:
            self._tick_calls.popleft()()

    def _disk_upkeep(self) -> None:
        """Tick callback (NOTES.md, "A full disk")."""
        stored_term = self.journal.current_term
        if self._so.raftCurrentTerm > stored_term:
            log.info("disk full: term %d could not be stored; back to term %d", self._so.raftCurrentTerm, stored_term)
            internals.forget_unstored_term(self._so, stored_term, self.journal.getVotedForNodeId())
        self._hand_over_if_disk_full()

    def _hand_over_if_disk_full(self) -> None:
        """A leader that can store no entry commits nothing, yet keeps the others
        from electing one that can: it hands leadership to a caught-up peer whose disk takes
        entries (then, deposed, it ignores the new term until it can store it: transport)."""
        if not self.journal.full:
            self._full_since, self._handover_logged = None, False
            return
        now = time.monotonic()
        if self._full_since is None:
            self._full_since = now
        if not self.is_leader or now < self._next_handover or now - self._full_since < HANDOVER_AFTER_S:
            return
        self._next_handover = now + HANDOVER_RETRY_S
        full = set(self.peers_with_full_disks())
        last = self.journal.last_index
        voters = {node.address for node in internals.other_voters(self._so)}
        for addr, hello in sorted(self.hellos().items()):
            fresh = now - hello.at <= HANDOVER_RETRY_S
            if fresh and addr not in full and addr in voters and self.replicated_index(addr) >= last:
                if not self._handover_logged:  # one line per full episode, not per try
                    self._handover_logged = True
                    log.warning("disk full: handing leadership over to %s", addr)
                self._so.transferLeadership(addr, lambda _result, _reason: None)
                return

    def _state_changed(self, old: int, new: int) -> None:
        self._on_role_changed(role_of(old), role_of(new))
