"""Every private field and method of PySyncObj 0.3.17's SyncObj the engine touches, one small
function each. Nothing else in raftkv spells a `_SyncObj__` name.

Why each is needed: node/engine/NOTES.md, "Private names". Each function is exercised on a
real SyncObj by tests/unit/engine/test_pysyncobj_pins.py, so a release that renames or
reshapes one fails there rather than in a cluster.

Threading: the writers run on PySyncObj's tick thread only (they race it otherwise).
"""

from __future__ import annotations

import collections
import contextlib
import sys
import weakref
from collections.abc import Callable

from pysyncobj import SyncObj
from pysyncobj.monotonic import monotonic as raft_clock  # PySyncObj's clock: its deadlines are on it

# Recorded as a term's vote: no candidate has this address, so every vote request in that
# term is refused (PySyncObj grants a vote only while its vote of the term is None).
NO_VOTE = "-"
FOLLOWER, CANDIDATE, LEADER = 0, 1, 2  # PySyncObj's _RAFT_STATE
_ON_TICK = SyncObj._onTick.__code__


def is_leader(syncobj: SyncObj) -> bool:
    return syncobj._isLeader()


def received_transmission(syncobj: SyncObj):
    """Follower: the pieces of an entry sent in pieces received so far ('' between entries)."""
    return syncobj._SyncObj__recvTransmission


def clear_received_transmission(syncobj: SyncObj) -> None:
    syncobj._SyncObj__recvTransmission = ""


def last_known_leader(syncobj: SyncObj):
    """The leader PySyncObj last heard of (a Node), or None; kept until it starts an election."""
    return syncobj._getLeader()


def election_due_in(syncobj: SyncObj) -> float:
    """Seconds until this node, a follower or candidate, starts an election (negative: overdue).
    On PySyncObj's clock (CLOCK_MONOTONIC_RAW), not time.monotonic(): the two differ by an offset
    that grows with uptime (0.15 s on a fresh machine, minutes after weeks of NTP slewing)."""
    return syncobj._SyncObj__raftElectionDeadline - raft_clock()


def hold_election_for(syncobj: SyncObj, seconds: float) -> None:
    """Tick thread: no election starts in the next `seconds` (PySyncObj's clock)."""
    syncobj._SyncObj__raftElectionDeadline = raft_clock() + seconds


def wake_at_election_deadline(syncobj: SyncObj) -> None:
    """Before the tick thread starts: a follower's (or candidate's) poll ends at its election
    deadline instead of waiting out the whole tick period.

    A follower checks its deadline only at the start of a tick, and with no leader its ticks come
    every `autoTickPeriod`, counted from the last message. Both followers last woke for the same
    heartbeat of the leader that died, so their ticks kept the same phase: two deadlines within one
    period (50 ms of the 0.6 s range, about one election in twelve) were found at the same moment,
    both stood, and the election took a second round (tests/integration/test_failover.py)."""
    poller = syncobj._poller
    own_poll = poller.poll
    ref = weakref.ref(syncobj)  # no cycle: PySyncObj's tick thread ends when its SyncObj is collected

    def poll(timeout: float) -> None:
        so = ref()
        if so is not None and so._SyncObj__raftState != LEADER:
            left = so._SyncObj__raftElectionDeadline - raft_clock()
            if 0 < left < timeout:
                timeout = left + 0.001  # poll counts whole milliseconds: be past the deadline when it ends
        own_poll(timeout)

    poller.poll = poll


def record_no_vote(syncobj: SyncObj, term: int) -> None:
    """Tick thread: make `term` current with a vote for no one (stored in the journal at once)."""
    syncobj._SyncObj__setCurrentTerm(term, NO_VOTE)


def forget_unstored_term(syncobj: SyncObj, term: int, voted_for: str | None) -> None:
    """Tick thread: PySyncObj took a term into memory whose store failed (an election started as
    the disk filled: `__setCurrentTerm` sets memory first). Nothing was sent in it: go back to
    the stored `term` and vote, and a candidate back to follower."""
    syncobj._SyncObj__raftCurrentTerm = term
    syncobj._SyncObj__votedForNodeId = voted_for
    if syncobj._SyncObj__raftState == CANDIDATE:
        syncobj._SyncObj__setState(FOLLOWER)


def last_log_index(syncobj: SyncObj) -> int:
    """The index of the last entry in this node's log (committed or not)."""
    return syncobj._SyncObj__getCurrentLogIndex()


def match_indexes(syncobj: SyncObj) -> dict:
    """Leader: link (Node, readonly links included) -> highest index known replicated there."""
    return syncobj._SyncObj__raftMatchIndex


def other_voters(syncobj: SyncObj) -> set:
    """The voters PySyncObj replicates to and counts (Nodes), this node excluded."""
    return syncobj._SyncObj__otherNodes


def set_other_voters(syncobj: SyncObj, addresses: list[str]) -> None:
    """Tick thread: make `addresses` PySyncObj's other voters.

    Its own configuration update (used when it loads a snapshot) forgets the leader's
    last-response time of a new peer, which its step-down check then reads (KeyError on every
    tick): a new peer counts as just heard, on PySyncObj's clock (the one the check reads).
    """
    syncobj._SyncObj__updateClusterConfiguration(addresses)
    heard = syncobj._SyncObj__lastResponseTime
    for node in syncobj._SyncObj__otherNodes:
        heard.setdefault(node, raft_clock())


def count_own_copy_up_to(syncobj: SyncObj, synced_index: Callable[[], int]) -> None:
    """Before the tick thread starts: the leader's commit computation counts its own copy only up
    to `synced_index()` (what its completed syncs cover).

    PySyncObj counts the leader's copy of every entry in its log unasked (`count = 1` in
    `_onTick`'s loop `while commitIdx < self.__getCurrentLogIndex()`) and offers no hook there.
    `__getCurrentLogIndex` is looked up on the instance at each call, so we set one of our own
    that answers `min(last index, synced_index())` to that loop only: to callers whose frame is
    `_onTick` while this node leads (in 0.3.17 the only other call in `_onTick` is a candidate's
    vote request). The bound is conservative: an entry past the leader's synced index is not
    committed this tick even if every follower has it (its sync started first and ends soon).
    NOTES.md, "Durability"; pinned by tests/unit/engine/test_pysyncobj_pins.py."""
    own_last = SyncObj._SyncObj__getCurrentLogIndex  # the plain function
    ref = weakref.ref(syncobj)  # no cycle: PySyncObj's tick thread ends when its SyncObj is collected

    def current_log_index() -> int:
        so = ref()
        last = own_last(so)
        if sys._getframe(1).f_code is _ON_TICK and so._SyncObj__raftState == LEADER:  # type: ignore[union-attr]
            return min(last, synced_index())
        return last

    syncobj._SyncObj__getCurrentLogIndex = current_log_index


def leader_noop_index(syncobj: SyncObj) -> int | None:
    """Leader: the index of the no-op PySyncObj appended when this node was last elected
    (`__onBecomeLeader`); once committed, the leader has committed an entry of its term."""
    return syncobj._SyncObj__noopIDx


def wake(syncobj: SyncObj) -> None:
    """Any thread: end the tick thread's poll now (the pipe PySyncObj itself writes to when a
    command is queued; it exists because node.engine.conf turns batching off)."""
    with contextlib.suppress(BlockingIOError):  # the pipe is full: the tick thread wakes anyway
        syncobj._SyncObj__pipeNotifier.notify()


def on_wake(syncobj: SyncObj, callback: Callable[[], None]) -> None:
    """Run `callback()` on the tick thread, inside its poll, whenever the pipe `wake` writes to
    (or PySyncObj's own queueing of a command) ends a poll: the journal's sync thread wakes the
    tick thread that way, and a follower's acknowledgements then leave at once (NOTES.md,
    "Durability"). PySyncObj builds its `PipeNotifier` without a callback."""
    syncobj._SyncObj__pipeNotifier._PipeNotifier__callback = callback


def command_queue(syncobj: SyncObj) -> collections.deque:
    """PySyncObj's queue of commands waiting to be appended: (command, callback) pairs, the
    callback a function of this node, None, or (Node, request_id) for a command a follower
    forwarded. Other threads only append to it; only the tick thread takes from its left."""
    return syncobj._SyncObj__commandsQueue._FastQueue__queue


def commands_queued(syncobj: SyncObj) -> bool:
    """Any thread: commands wait in PySyncObj's queue (proposed here or forwarded to this leader);
    its tick appends them in `_checkCommandsToApply`."""
    return bool(command_queue(syncobj))


def check_commands_with(syncobj: SyncObj, check: Callable[[Callable[[], None]], None]) -> None:
    """Before the tick thread starts: each tick calls `check(own)` where it called
    `_checkCommandsToApply()`; `own()` is PySyncObj's (the tick looks the name up on the instance)."""
    own = SyncObj._checkCommandsToApply.__get__(syncobj)
    syncobj._checkCommandsToApply = lambda: check(own)


def append_as_leader(syncobj: SyncObj, command: bytes) -> tuple[int, int]:
    """Tick thread, leader: append `command` to the log in the current term, as
    `_checkCommandsToApply` does; returns its (index, term). The journal's errors (a full disk)
    propagate as they do from there."""
    index, term = syncobj._SyncObj__getCurrentLogIndex() + 1, syncobj._SyncObj__raftCurrentTerm
    syncobj._SyncObj__raftLog.add(command, index, term)
    return index, term


def when_applied(syncobj: SyncObj, index: int, term: int, callback: Callable[[object, int], None]) -> None:
    """Tick thread: `callback(result, FAIL_REASON)` once the entry at `index` is applied here:
    SUCCESS if it is still of `term`, DISCARDED if another leader's entry took its place."""
    syncobj._SyncObj__commandsWaitingCommit[index].append((term, callback))


def send_append_entries(syncobj: SyncObj) -> None:
    """Tick thread, leader: ship what each follower lacks now (with batching off PySyncObj does
    this after every command it appends)."""
    syncobj._SyncObj__sendAppendEntries()


def waiting_replies(syncobj: SyncObj) -> dict:
    """Follower: request_id -> the callback of a command forwarded to the leader whose
    `apply_command_response` has not arrived yet."""
    return syncobj._SyncObj__commandsWaitingReply
