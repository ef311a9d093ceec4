"""A follower's acknowledgement leaves only once a completed sync of the journal's sync thread
covers it (node.engine.transport, `_acknowledge` / `send_synced_acks`), on a real SyncObj and
transport ticked by hand; a tail cut or a new term voids the waiting ones."""

from pysyncobj.transport import TCPTransport

from node.engine import internals
from tests.support.wait import wait_until


def ack(transport, node, index):
    transport.send(node, {"type": "next_node_idx", "next_node_idx": index + 1, "reset": False, "success": True})


def held_sync(journal):
    """While held, no sync can run (the sync thread waits for the lock)."""
    return journal._sync_lock


def add(journal, first, last, term=1):
    for i in range(first, last + 1):
        journal.add(b"c%d" % i, i, term)


def test_an_ack_waits_for_the_sync_that_covers_it_and_leaves_from_the_wake(follower):
    journal, transport, acks, leader = follower
    base = journal.last_index
    with held_sync(journal):
        add(journal, base + 1, base + 3)
        ack(transport, leader, base + 2)
        ack(transport, leader, base + 3)
        assert acks == []  # not durable yet: nothing acknowledged
    wait_until("the sync", lambda: journal.synced_index == base + 3, 5)
    transport._syncObj.doTick(0.5)  # the wake makes this poll return; its handler sends
    assert acks == [base + 3]  # only the highest covered one leaves
    ack(transport, leader, base + 1)  # already covered: at once
    assert acks == [base + 3, base + 1]


def test_a_tail_cut_voids_the_waiting_acks(follower):
    journal, transport, acks, leader = follower
    base = journal.last_index
    with held_sync(journal):
        add(journal, base + 1, base + 3)
        ack(transport, leader, base + 3)
        journal.deleteEntriesFrom(len(journal) - 2)  # base + 2 and base + 3 are gone
        add(journal, base + 2, base + 3, term=2)  # another leader's entries at the same indexes
    wait_until("the sync", lambda: journal.synced_index == base + 3, 5)
    transport.send_synced_acks()
    assert acks == []  # it described entries that are no longer in the log


def test_a_new_term_voids_the_waiting_acks(follower):
    journal, transport, acks, leader = follower
    base = journal.last_index
    with held_sync(journal):
        add(journal, base + 1, base + 2)
        ack(transport, leader, base + 2)
        internals.record_no_vote(transport._syncObj, transport._syncObj.raftCurrentTerm + 1)
    wait_until("the sync", lambda: journal.synced_index == base + 2, 5)
    transport.send_synced_acks()
    assert acks == []


def test_a_failed_ack_is_never_sent_while_no_sync_covers_it(follower, monkeypatch):
    journal, transport, acks, leader = follower
    journal.stop_syncing()
    journal._on_synced = None
    base = journal.last_index
    add(journal, base + 1, base + 1)
    monkeypatch.setattr(journal, "sync", lambda: False)  # a full disk at fdatasync
    ack(transport, leader, base + 1)  # no sync thread: it tries to sync itself, which fails
    transport.send_synced_acks()
    assert acks == []


def test_a_sync_wakes_the_follower_only_when_an_ack_waits_for_it(follower, monkeypatch):
    journal, transport, acks, leader = follower
    wakes = []
    real_wake = internals.wake
    monkeypatch.setattr(internals, "wake", lambda so: wakes.append(1) or real_wake(so))
    base = journal.last_index
    add(journal, base + 1, base + 1)
    wait_until("the sync", lambda: journal.synced_index == base + 1, 5)
    with held_sync(journal):  # the first sync's thread has told the transport by the time this one runs
        add(journal, base + 2, base + 2)
        ack(transport, leader, base + 2)
    wait_until("the ack", lambda: wakes and (transport._syncObj.doTick(0.0) or acks == [base + 2]), 5)
    assert len(wakes) == 1  # the first sync had no acknowledgement waiting: no tick for nothing


class _SyncEndsDuringTheCheck:
    """The journal as `_acknowledge` reads it: the sync covering the entry completes (and finds
    no acknowledgement waiting, so wakes nobody) between its first look and the queueing."""

    def __init__(self, journal, index):
        self._journal, self._index, self._looks = journal, index, 0

    def __getattr__(self, name):
        return getattr(self._journal, name)

    @property
    def synced_index(self):
        self._looks += 1
        return self._index - 1 if self._looks == 1 else self._index


def test_an_ack_queued_as_its_sync_ends_leaves_without_a_wake(follower):
    journal, transport, acks, leader = follower
    base = journal.last_index
    add(journal, base + 1, base + 1)
    wait_until("the sync", lambda: journal.synced_index == base + 1, 5)
    transport.journal = _SyncEndsDuringTheCheck(journal, base + 1)
    try:
        ack(transport, leader, base + 1)
    finally:
        transport.journal = journal
    assert acks == [base + 1]  # sent by the re-check: no wake would ever have come for it


def test_an_empty_append_entries_waits_for_the_one_that_carries_the_queued_commands(follower, monkeypatch):
    """A leader skips an AppendEntries without entries while commands are queued: the one that
    carries them, sent later in the same tick, has the same commit index."""
    _journal, transport, _acks, peer = follower
    sent = []
    monkeypatch.setattr(TCPTransport, "send", lambda self, node, message: sent.append(message) or True)
    empty = {"type": "append_entries", "term": 1, "commit_index": 1, "entries": [], "prevLogIdx": 1,
             "prevLogTerm": 1}
    transport.send(peer, dict(empty))
    assert sent == [empty]  # nothing queued: a heartbeat leaves
    queue_command(transport, b"payload")
    transport.send(peer, dict(empty))
    assert sent == [empty]  # skipped: the commands' own AppendEntries follows in this tick
    carrying = {**empty, "entries": [(b"\x00payload", 2, 1)]}
    transport.send(peer, carrying)
    transport.send(peer, {"type": "append_entries", "term": 1, "commit_index": 1, "serialized": b"x"})
    assert sent[1:] == [carrying, {"type": "append_entries", "term": 1, "commit_index": 1, "serialized": b"x"}]


def queue_command(transport, payload):
    """Queue a command as the event loop does (appended at the next tick)."""
    transport._syncObj._SyncObj__consumers[0].apply(payload, callback=None)
