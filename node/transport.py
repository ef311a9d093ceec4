"""PySyncObj's TCP transport with our durability and safety rules at the message seam.

Outgoing (`send`, tick thread):
* before an `append_entries` leaves the leader, its journal is synced, so by the time any
  follower can acknowledge an entry the leader's own copy is on disk;
* before a follower sends a successful `next_node_idx` (its acknowledgement), its journal is
  synced: an entry is acknowledged only once it is durable here.

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


class DurableTransport(TCPTransport):
    def __init__(self, syncObj, selfNode, otherNodes, *, journal: DurableJournal, on_ack=None):  # noqa: N803
        super().__init__(syncObj, selfNode, otherNodes)
        self.journal = journal
        self.last_leader_contact = 0.0  # time.monotonic() of the last append_entries received
        self._on_ack = on_ack  # test seam: (acked_index, monotonic time) when an ack is sent

    def send(self, node, message):
        kind = message.get("type")
        if kind == "append_entries":
            self.journal.sync()
        elif kind == "next_node_idx" and message.get("success"):
            self.journal.sync()
            if self._on_ack is not None:
                self._on_ack(message["next_node_idx"] - 1, time.monotonic())
        return super().send(node, message)

    def _onMessageReceived(self, node, message):  # noqa: N802 - PySyncObj's name
        if message.get("type") == "append_entries":
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
