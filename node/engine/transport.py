"""PySyncObj's TCP transport with our durability and safety rules at the message seam.

Outgoing (`send`, tick thread):
* an `append_entries` leaves the leader at once, before the leader's own sync: the leader
  writes its log in parallel with the followers (Raft thesis §10.2.1). Safe because the
  leader's commit computation counts its own copy only up to `journal.synced_index`
  (node.engine.internals.count_own_copy_up_to);
* a follower's successful `next_node_idx` (its acknowledgement) is sent only once a completed
  sync of the journal's sync thread covers the entries it acknowledges: at once if one does,
  else it waits here (`_acknowledge`). The sync thread wakes the tick thread through
  PySyncObj's own wake-up pipe (`sync_completed`, `internals.wake`), whose handler sends what is
  now covered (`send_synced_acks`, also a tick callback). PySyncObj's sockets are not thread-safe:
  acknowledgements are only ever sent from the tick thread. A tail cut of the log or a new term
  voids the waiting ones (they described a log that is gone; the leader asks again), and a sync
  that fails (a full disk) covers nothing, so nothing waiting is sent.

Keep-alive (`keep_alive`, a tick callback): every connection carries a tiny message at least
every KEEPALIVE_S. Followers never talk to each other in Raft, and PySyncObj drops a connection
that received nothing for `connectionTimeout` (2 s) at the moment it next sends on it: the
first vote request after a leader's death went down with the idle link between the survivors
and the election waited a whole election timeout more (new leader after 1.6-1.9 s instead of
0.6-1.2 s; tests/fault/README.md #4; NOTES.md, "Idle links"). The receiver swallows these
messages.

Hello: the keep-alive is also each node's `hello` (its cluster id, configuration, published
members, whether it has replayed its own log): how a node with an empty data folder learns
whether its cluster already exists, and how the leader sees a learner's progress
(node.membership).

Standing (node.membership.Standing): a node that may not vote drops vote requests and
leadership hand-overs, and never stands for election (its election deadline is held off each
tick); a node in probation also drops entries, so it acknowledges nothing. A learner connects
to every voter as PySyncObj's 'readonly' peer: it receives the log and the snapshots but is
not counted in any majority.

* an `append_entries` without entries is skipped while commands wait in PySyncObj's queue: the
  one that carries them follows in the same tick with the same commit index (`_followed_at_once`).

Incoming (`_onMessageReceived`, tick thread):
* `append_entries` stamps the time of last contact with the leader (PySyncObj keeps none);
* redundant entries are trimmed from `append_entries` before PySyncObj sees them. PySyncObj
  0.3.17 rewinds `nextIndex` on every success reply and its follower then deletes *every*
  entry after `prevLogIdx`, including entries it already applied (NOTES.md, "Truncation of
  committed entries"). Raft
  only deletes from the first conflicting entry; we present PySyncObj with a message that
  starts after the entries we already hold with the same term, so it never truncates those.

A full disk (node.disk; `journal.full`): the node appends, acknowledges and votes for nothing
it cannot store. Incoming entries are trimmed as above and the rest left out, so PySyncObj
answers with what it holds (the leader keeps hearing from us and its view stays exact);
snapshot pieces, vote requests and hand-overs are dropped, and the node never stands for
election. A message with a newer term is taken only once that term is stored (else dropped).
An append or term write that meets a full disk raises `NoSpaceError` out of
PySyncObj's handler, which therefore sends nothing; it is swallowed here (the monitor reports
it). An acknowledgement is sent only once a sync covering it succeeded.

Valid for pysyncobj==0.3.17 exactly (overridden methods, fields and message names, listed in
node/engine/NOTES.md); tests/unit/engine/test_pysyncobj_pins.py pins them, and
tests/unit/engine/test_transport_trim.py the trimming.
"""

from __future__ import annotations

import collections
import time

from pysyncobj.node import TCPNode
from pysyncobj.transport import TCPTransport

from node.disk import NoSpaceError, is_no_space
from node.engine import internals, read_index, wire
from node.engine.failures import NOT_LEADER
from node.engine.journal import DurableJournal
from node.engine.merge import EntryMerger, slice_of
from node.engine.read_index import ReadIndex
from node.membership import PeerHello, Standing

KEEPALIVE_S = 0.5  # well inside connectionTimeout (node.settings, node.engine.conf)
# A connection someone opened to us must say who it is (after proving the secret, when there
# is one) within this long, and at most this many may be waiting to: a flood of connections
# that never speak holds a bounded number of sockets, and never starves the tick thread.
IDENTIFY_WITHIN_S = 5.0
MAX_UNIDENTIFIED = 64
_HELLO = "raftkv_keepalive"
_REMOVED = "raftkv_removed"
_VOTING_MESSAGES = ("request_vote", "timeout_now")
_LEADER_MESSAGES = ("append_entries", "request_vote", "timeout_now")
_TERM_MESSAGES = ("append_entries", "request_vote")  # the messages whose newer term PySyncObj adopts


class DurableTransport(TCPTransport):
    def __init__(self, syncObj, selfNode, otherNodes, *, journal: DurableJournal, standing: Standing,  # noqa: N803
                 hello=None, on_ack=None, on_removed=None):
        self.standing = standing  # before super(): its addNode() asks _shouldConnect
        super().__init__(syncObj, selfNode, otherNodes)
        self.journal = journal
        self.last_leader_contact = 0.0  # time.monotonic() of the last append_entries received
        self._on_ack = on_ack  # (acked_index, monotonic time) when an ack is sent: the durability observer
        self._hello = hello or dict  # () -> this node's hello fields
        self._on_removed = on_removed or (lambda: None)
        self._next_keepalive = 0.0
        self.refuse_commands = False  # set when a graceful stop begins
        self.hellos: dict[str, PeerHello] = {}  # peer raft address -> its last hello
        self.hello_links: dict[str, object] = {}  # peer raft address -> the link (Node) it said it on
        # Acknowledgements waiting for a sync to cover them: link -> deque of (index, message), by
        # index; valid while the journal's tail-cut count and the term are `_acks_made_at`.
        self._waiting_acks: dict[object, collections.deque] = {}
        self._acks_made_at = (0, 0)
        self.highest_acked = 0  # leader: the highest index a peer has acknowledged (`sync_completed`)
        self.read_index: ReadIndex | None = None  # set by the engine once SyncObj is built
        self.merger: EntryMerger | None = None  # set by the engine before the tick thread starts

    def send(self, node, message):
        kind = message.get("type")
        if kind == "next_node_idx" and message.get("success"):
            return self._acknowledge(node, message)
        if kind == "request_vote" and not self.standing.voting:
            return False
        if kind == "append_entries" and self._followed_at_once(message):
            return True
        if kind == "apply_command":
            message["slices"] = True  # our results may come as a slice of a merged entry (node.engine.merge)
        return super().send(node, message)

    def _followed_at_once(self, message) -> bool:
        """Leader: an AppendEntries without entries (the commit index after an apply, or a
        heartbeat) while commands wait in PySyncObj's queue. Later in this same tick
        `_checkCommandsToApply` appends them and sends every connected peer an AppendEntries that
        carries them and the same commit index (NOTES.md, "Tick order"), so this one is skipped:
        under load nearly every tick that applied entries also appends new ones, and each empty
        message cost both followers a message to decode and an acknowledgement to send, and the
        leader two acknowledgements to read (32 writers, 4 alternating pairs: 1.06x to 1.54x
        writes/s). Not while the disk is full (an append would fail and send nothing)."""
        return (not message.get("entries") and "prevLogIdx" in message and "transmission" not in message
                and internals.commands_queued(self._syncObj) and not self.journal.full)

    # -- acknowledgements after the sync that covers them (tick thread, but sync_completed) -------

    def _acknowledge(self, node, message) -> bool:
        """Send the acknowledgement now if a completed sync covers it, else keep it for when one does."""
        index = message["next_node_idx"] - 1
        self._void_stale_acks()
        if not self.journal.syncing:  # no sync thread (a journal driven by hand): sync here, as before
            self.journal.sync()
        waiting = self._waiting_acks.get(node)
        if not waiting and index <= self.journal.synced_index:
            return self._send_ack(node, message, index)
        if waiting is None:
            waiting = self._waiting_acks[node] = collections.deque()
        if not waiting or index > waiting[-1][0]:  # a lower one is covered by the later send of a higher
            waiting.append((index, message))
        if index <= self.journal.synced_index:  # a sync ended since the check above and may have seen
            self.send_synced_acks()  # nothing waiting, so it did not wake us (`sync_completed`)
        return True

    def _send_ack(self, node, message, index: int) -> bool:
        if self._on_ack is not None:
            self._on_ack(index, time.monotonic())
        return super().send(node, message)

    def _void_stale_acks(self) -> None:
        """Waiting acknowledgements describe the log when they were made: a tail cut since (a
        truncation, a snapshot load) or a new term voids them; the leader will ask again."""
        now = (self.journal.truncations, self._syncObj.raftCurrentTerm)
        if now != self._acks_made_at:
            self._waiting_acks.clear()
            self._acks_made_at = now

    def send_synced_acks(self) -> None:
        """Tick thread: send, per link, the highest waiting acknowledgement a completed sync covers."""
        if not self._waiting_acks:
            return
        self._void_stale_acks()
        synced = self.journal.synced_index
        for node, waiting in list(self._waiting_acks.items()):
            covered = None
            while waiting and waiting[0][0] <= synced:
                covered = waiting.popleft()
            if not waiting:
                del self._waiting_acks[node]
            if covered is not None:
                self._send_ack(node, covered[1], covered[0])

    def sync_completed(self) -> None:
        """The journal's sync thread, after a sync that made more entries durable: wake the tick
        thread (PySyncObj's own pipe, `internals.wake`; the engine makes `send_synced_acks` its
        handler, run inside the poll) only when that lets it act now: send a follower's waiting
        acknowledgements, or count a leader's own copy toward a commit that a peer has already
        acknowledged or that needs no peer. Any other wake is a whole tick for nothing, and on
        two shared cores a context switch in the way of the next acknowledgement.
        No wake is lost: a follower re-checks the synced index after it queues an acknowledgement
        (`_acknowledge`); a leader sets `highest_acked` before PySyncObj counts the acknowledgement,
        and its commit computation, after that, reads the synced index the sync set before this."""
        so = self._syncObj
        if self._waiting_acks or (internals.is_leader(so) and (
                self.highest_acked > so.raftCommitIndex or not internals.other_voters(so))):
            internals.wake(so)

    def destroy(self):
        super().destroy()
        self._waiting_acks.clear()

    def keep_alive(self) -> None:
        """Tick callback: the hello on every link, and no election while we may not vote."""
        standing = self.standing
        now = time.monotonic()
        if not standing.voting or self.journal.full:  # a vote we could not store is no vote
            internals.hold_election_for(self._syncObj, 3600)
        elif internals.election_due_in(self._syncObj) > 60:  # just allowed to vote again
            internals.hold_election_for(self._syncObj, self._syncObj.conf.raftMaxTimeout)
        if self._unknownConnections:
            self._drop_silent_strangers(now)
        if now < self._next_keepalive:
            return
        # A node still deciding whether it may join says hello every tick: start-up waits on it.
        self._next_keepalive = now + (KEEPALIVE_S if standing.accepting else 0.0)
        message = {"type": _HELLO, **self._hello()}
        for node in list(self._connections):
            super().send(node, message)  # a no-op on links that are down

    def _drop_silent_strangers(self, now: float) -> None:
        """PySyncObj keeps an accepted connection until it names itself, and checks a connection's
        idle time only when it has an event: one that never speaks was kept for good."""
        for conn in list(self._unknownConnections):
            if now - getattr(conn, "opened_at", now) > IDENTIFY_WITHIN_S:
                wire.THROTTLED.warning("silent", "raft: closed a connection that did not identify itself within "
                                                 f"{IDENTIFY_WITHIN_S:.0f} s")
                conn.disconnect()
                self._unknownConnections.discard(conn)

    def _onNewIncomingConnection(self, conn):  # noqa: N802 - PySyncObj's name
        if len(self._unknownConnections) >= MAX_UNIDENTIFIED:
            oldest = min(self._unknownConnections, key=lambda c: getattr(c, "opened_at", 0.0))
            wire.THROTTLED.warning("flood", f"raft: {MAX_UNIDENTIFIED} connections are waiting to identify "
                                            "themselves; closed the oldest")
            oldest.disconnect()
            self._unknownConnections.discard(oldest)
        super()._onNewIncomingConnection(conn)

    def _on_read_index_message(self, node, message) -> None:
        """ReadIndex (node.engine.read_index). A node that may not vote, or takes no entries,
        confirms no leader: its term says nothing about the votes it may have given and lost."""
        if message["type"] == read_index.PING and not (self.standing.voting and self.standing.accepting):
            return
        if self.read_index is not None:
            self.read_index.on_message(node, message)

    def send_read_index(self, node, message) -> None:
        """Tick thread: a ReadIndex message (past `send`'s acknowledgement rules: it is none)."""
        super().send(node, message)

    def tell_removed(self, node) -> None:
        """Leader, tick thread: tell a voter it has just been removed (sent before the link drops)."""
        super().send(node, {"type": _REMOVED})

    def become_voter(self) -> None:
        """Tick thread: a learner just promoted reconnects to every peer under its own address."""
        self.standing.learner = False
        for node in list(self._nodes):
            self.dropNode(node)
            self.addNode(node)

    def _sendSelfAddress(self, conn):  # noqa: N802 - PySyncObj's name
        if self.standing.learner:
            conn.send("readonly")
        else:
            super()._sendSelfAddress(conn)

    def _shouldConnect(self, node):  # noqa: N802 - PySyncObj's name
        if self.standing.learner:  # voters do not know us yet: we call them all
            return isinstance(node, TCPNode) and node not in self._preventConnectNodes
        return super()._shouldConnect(node)

    def _onIncomingMessageReceived(self, conn, message):  # noqa: N802 - PySyncObj's name
        """A stranger's first message is its address; PySyncObj hangs up on an address it does
        not know. We first say hello, so a node that is not (or no longer) a member learns it
        and does not wait forever to be admitted.

        Anything but an address is refused: PySyncObj takes a list there as a utility command
        from anybody (status, add or remove a member, set the code version, transfer the
        leadership), and raftkv uses none (NOTES.md, "The wire")."""
        if not isinstance(message, str) and not (self._syncObj.encryptor and not conn.sendRandKey):
            wire.THROTTLED.warning("unidentified", "raft: closed a connection whose first message is not a node "
                                                   "address (PySyncObj's utility commands are refused)")
            conn.disconnect()
            return
        node = self._nodeAddrToNode.get(message) if isinstance(message, str) else None
        if node is not None and not self.standing.learner and TCPTransport._shouldConnect(self, node):
            # Between two voters only the greater address dials, so this is not that peer. PySyncObj
            # would make it the peer's link, and when it closed, redial on the accepted connection
            # object, which never says who we are: that peer would refuse us for good.
            wire.THROTTLED.warning("impostor", f"raft: closed a connection that claims to be {message}: this node "
                                               "connects to that peer itself")
            conn.disconnect()
            return
        if (isinstance(message, str) and message != "readonly" and message not in self._nodeAddrToNode
                and not self._syncObj.encryptor):
            conn.send({"type": _HELLO, **self._hello()})
        super()._onIncomingMessageReceived(conn, message)

    def _onMessageReceived(self, node, message):  # noqa: N802 - PySyncObj's name
        if not well_formed(message):
            wire.THROTTLED.warning("shape", f"raft: closed the link of {node}: it sent a message raftkv never sends")
            conn = self._connections.get(node)
            if conn is not None:
                conn.disconnect()
            return
        kind = message["type"]
        if kind == _HELLO:
            hello = PeerHello.from_message(message)
            if hello is not None:
                self.hellos[hello.addr] = hello
                self.hello_links[hello.addr] = node  # a learner's link is a 'readonly' Node
            return
        if kind == _REMOVED:
            if node == internals.last_known_leader(self._syncObj):  # only our leader may say so
                self._on_removed()
            return
        if kind in read_index.MESSAGES:
            self._on_read_index_message(node, message)
            return
        if kind == "next_node_idx" and message.get("success") and type(message.get("next_node_idx")) is int:
            self.highest_acked = max(self.highest_acked, message["next_node_idx"] - 1)  # before PySyncObj counts it
        standing = self.standing
        if kind == "apply_command" and self.refuse_commands and "request_id" in message:
            # A stopping leader takes no new entries from its followers either, so the log
            # stops growing and the hand-over target can be fully caught up (PySyncObj's rule).
            super().send(node, {"type": "apply_command_response", "request_id": message["request_id"],
                                "error": NOT_LEADER})
            return
        if kind == "apply_command" and self.merger is not None:
            self.merger.forwarded(node, message)
        if kind == "apply_command_response" and "part" in message:
            self._take_part(message)
        if (not standing.accepting and kind in _LEADER_MESSAGES) or (
                not standing.voting and kind in _VOTING_MESSAGES):
            return
        term = message.get("term")
        if kind in _TERM_MESSAGES and type(term) is int and term > self._syncObj.raftCurrentTerm:
            # PySyncObj takes a newer term into memory before it stores it: had the store failed,
            # a leader would lead on in that term beside the one elected in it. Stored here first.
            try:
                self.journal.setCurrentTerm(term, None)
            except NoSpaceError:
                return
        full = self.journal.full
        if full and (kind in _VOTING_MESSAGES or (kind == "append_entries" and (
                "transmission" in message or message.get("serialized") is not None))):
            return  # nothing of it could be stored
        if kind == "append_entries":
            self.last_leader_contact = time.monotonic()
            if message.get("transmission") == "finish":
                if self._finish_comes_early(message):
                    message["transmission"] = "process"  # PySyncObj labels a middle piece 'finish' (NOTES.md)
                elif as_whole_entry(message, internals.received_transmission(self._syncObj)):
                    internals.clear_received_transmission(self._syncObj)  # as PySyncObj does after a 'finish'
            if message.get("entries") and "prevLogIdx" in message and "transmission" not in message:
                trim_known_entries(message, self.journal)
                if full:
                    message["entries"] = []  # after the trim: answers with what we hold, truncates nothing held
        try:
            super()._onMessageReceived(node, message)
        except OSError as exc:  # nothing was acknowledged or granted
            if not is_no_space(exc):
                raise
            if not isinstance(exc, NoSpaceError):  # a snapshot piece PySyncObj writes itself
                self.journal.disk.failed("snapshot", exc.filename or self.journal.path)


    def _take_part(self, message) -> None:
        """Our forwarded batch went into a merged entry: its callback takes its ops' results only."""
        part, request_id = message.pop("part"), message.get("request_id")
        callbacks = internals.waiting_replies(self._syncObj)
        if (type(part) is list and len(part) == 2 and all(type(n) is int and n >= 0 for n in part)
                and type(request_id) is int and request_id in callbacks and "error" not in message):
            callbacks[request_id] = slice_of(callbacks[request_id], part[0], part[1])

    def _finish_comes_early(self, message) -> bool:
        """An entry of 64 KiB or more arrives in pieces, and PySyncObj 0.3.17's leader labels the
        first piece that reaches the length of the entry's *command* 'finish', though the pickled
        entry (command, index, term) is a few bytes longer: when the two lengths straddle a
        multiple of the piece size, one more piece follows, and unpickling the early 'finish'
        raised out of the follower's tick (NOTES.md, "Entries in pieces").
        True when what arrived so far with this piece is still a pickle cut short."""
        so_far, data = internals.received_transmission(self._syncObj), message.get("data")
        if type(so_far) is not bytes or type(data) is not bytes:
            return False  # no 'start' seen: PySyncObj's own handling
        return wire.is_cut_short(so_far + data)


_SCALARS = (str, bytes, int, float, bool, type(None))
MAX_MESSAGE_DEPTH = 4  # the deepest message raftkv exchanges: a hello's dict of lists of str


def plain(value, depth: int = 0) -> bool:
    """Built of the plain types raftkv's messages use, nested at most MAX_MESSAGE_DEPTH deep,
    dicts keyed by str. The decoder builds no class, but the C unpickler still makes sets,
    frozensets and bytearrays without any global, hands back the two protocol 2 stand-ins when
    a pickle names them without calling them, and nests as deep as a frame allows (found by
    tests/unit/engine/test_wire_fuzz.py): none of that reaches PySyncObj's handlers."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if depth >= MAX_MESSAGE_DEPTH:
        return False
    if kind is dict:
        return all(type(k) is str and plain(v, depth + 1) for k, v in value.items())
    if kind is list or kind is tuple:
        return all(plain(v, depth + 1) for v in value)
    return False


def well_formed(message) -> bool:
    """The shapes PySyncObj's handlers take for granted (a dict with a `type`), and what raftkv
    puts in the log: an `append_entries` carries (command, index, term) tuples of the command
    types raftkv writes, an `apply_command` (a follower's proposal) one command of them; every
    other field a plain value (`plain`). Anything else would raise on the tick thread, or wedge
    every node when applied."""
    if type(message) is not dict or type(message.get("type")) is not str:
        return False
    kind = message["type"]
    if not all(type(k) is str and (k == "entries" or plain(v, 1)) for k, v in message.items()):
        return False
    if kind == "append_entries":
        entries = message.get("entries", [])
        return type(entries) is list and all(
            type(e) is tuple and len(e) == 3 and type(e[0]) is bytes and e[0][:1] and e[0][0] in wire.ENTRY_TYPES
            and type(e[1]) is int and type(e[2]) is int for e in entries)
    if kind == "apply_command":
        command = message.get("command")
        return type(command) is bytes and command[:1] == bytes([wire.REGULAR]) and wire.is_regular_command(command)
    return True


def as_whole_entry(message: dict, so_far) -> bool:
    """Make the last piece of an entry sent in pieces an ordinary append_entries of the whole
    entry (what PySyncObj does with it next), so that `trim_known_entries` applies to it too: a
    stale resend of an entry we hold would otherwise truncate every entry after it (NOTES.md,
    "Truncation of committed entries"). False, the message untouched, for anything that does not
    decode to one well-formed entry: PySyncObj's own handling then, as before."""
    data = message.get("data")
    if type(so_far) is not bytes or type(data) is not bytes or "prevLogIdx" not in message:
        return False
    try:
        entry = wire.ENTRIES.loads(so_far + data)
    except Exception:  # any decoding error: left to PySyncObj, which reports it
        return False
    if not well_formed({"type": "append_entries", "entries": [entry]}):
        return False
    del message["transmission"], message["data"]
    message["entries"] = [entry]
    return True


def trim_known_entries(message: dict, journal: DurableJournal) -> None:
    """Drop from `message` the leading entries the journal already holds with equal terms."""
    entries = message["entries"]
    skip = 0
    for _command, index, term in entries:
        if journal.entry_term(index) != term:
            break
        skip += 1
    if skip == 0:
        return  # nothing known, or a real conflict at the first entry: PySyncObj is right
    if skip < len(entries):
        _, index, term = entries[skip - 1]
        message["prevLogIdx"], message["prevLogTerm"] = index, term
        message["entries"] = entries[skip:]
        return
    # Every entry is already here. If our last entry carries the leader's term, this leader
    # wrote it, so (log matching) our whole log is a prefix of the leader's: acknowledge it
    # all without truncating anything.
    last = journal.last_index
    last_term = journal.entry_term(last)
    if last_term == message["term"]:
        message["prevLogIdx"], message["prevLogTerm"] = last, last_term
    else:
        _, index, term = entries[-1]
        message["prevLogIdx"], message["prevLogTerm"] = index, term
    message["entries"] = []
