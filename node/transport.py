"""PySyncObj's TCP transport with our durability and safety rules at the message seam.

Outgoing (`send`, tick thread):
* an `append_entries` leaves the leader at once, before the leader's own sync: the leader
  writes its log in parallel with the followers (Raft thesis §10.2.1). Safe because the
  leader counts its own copy toward a commit only in the next tick, and every tick syncs the
  journal before it polls (`RaftNode` registers `journal.sync` as a tick callback, which
  PySyncObj runs after appending and sending and before polling);
* before a follower sends a successful `next_node_idx` (its acknowledgement), its journal is
  synced: an entry is acknowledged only once it is durable here.

Keep-alive (`keep_alive`, a tick callback): every connection carries a tiny message at least
every KEEPALIVE_S. Followers never talk to each other in Raft, and PySyncObj drops a connection
that received nothing for `connectionTimeout` (2 s) at the moment it next sends on it: the
first vote request after a leader's death went down with the idle link between the survivors
and the election waited a whole election timeout more (new leader after 1.6-1.9 s instead of
0.6-1.2 s; tests/fault/README.md #4). The receiver swallows these messages.

Incoming (`_onMessageReceived`, tick thread):
* `append_entries` stamps the time of last contact with the leader (PySyncObj keeps none);
* redundant entries are trimmed from `append_entries` before PySyncObj sees them. PySyncObj
  0.3.17 rewinds `nextIndex` on every success reply and its follower then deletes *every*
  entry after `prevLogIdx`, including entries it already applied (reference §7.4). Raft
  only deletes from the first conflicting entry; we present PySyncObj with a message that
  starts after the entries we already hold with the same term, so it never truncates those.

Valid for pysyncobj==0.3.17 exactly (message field names); tests/unit/test_transport_seams.py
pins the behaviour.
"""

from __future__ import annotations

import time

from pysyncobj.transport import TCPTransport

from node.journal import DurableJournal

KEEPALIVE_S = 0.5  # well inside connectionTimeout (node.settings)
_KEEPALIVE = {"type": "raftkv_keepalive"}


class DurableTransport(TCPTransport):
    def __init__(self, syncObj, selfNode, otherNodes, *, journal: DurableJournal, on_ack=None):  # noqa: N803
        super().__init__(syncObj, selfNode, otherNodes)
        self.journal = journal
        self.last_leader_contact = 0.0  # time.monotonic() of the last append_entries received
        self._on_ack = on_ack  # test seam: (acked_index, monotonic time) when an ack is sent
        self._next_keepalive = 0.0

    def send(self, node, message):
        if message.get("type") == "next_node_idx" and message.get("success"):
            self.journal.sync()
            if self._on_ack is not None:
                self._on_ack(message["next_node_idx"] - 1, time.monotonic())
        return super().send(node, message)

    def keep_alive(self) -> None:
        now = time.monotonic()
        if now < self._next_keepalive:
            return
        self._next_keepalive = now + KEEPALIVE_S
        for node in list(self._connections):
            super().send(node, _KEEPALIVE)  # a no-op on links that are down

    def _onMessageReceived(self, node, message):  # noqa: N802 - PySyncObj's name
        kind = message.get("type")
        if kind == "raftkv_keepalive":
            return
        if kind == "append_entries":
            self.last_leader_contact = time.monotonic()
            if message.get("entries") and "prevLogIdx" in message and "transmission" not in message:
                trim_known_entries(message, self.journal)
        super()._onMessageReceived(node, message)


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
