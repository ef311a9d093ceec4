"""Reads of this node's store from the event loop: the consistency modes, who must answer,
and a view that is consistent while the tick thread applies entries.

| requested          | answered by                                      | before answering |
| ------------------ | ------------------------------------------------ | ---------------- |
| stale              | this node, even without a leader                 | nothing          |
| stale, max_stale=D | this node if it heard from the leader within D, else the leader | nothing |
| default            | the leader (one forwarding hop)                  | a ReadIndex round |
| consistent         | this node                                        | a ReadIndex round |

A ReadIndex round (Raft thesis §6.4; node.engine.read_index) writes nothing: the leader
records its commit index, confirms with a majority that it still leads in its term (its own
ping, answered by each voter with its term, sent after the read arrived), and the read is
answered once this node has applied that index. A follower asks the leader for the index over
the Raft link and answers from its own store once it has applied that far; with 3 voters or
fewer the ask itself confirms the leader (the two are a majority), so no round is needed. The leader serves
none before the no-op of its election is committed, and a deposed leader (paused, cut off) can
never pass one: a majority answers it with a newer term, or not at all. Reads coalesce into
rounds, at most two in flight per node (node.proposer.ReadBarrier).

No leader lease for default reads: a lease lets the leader answer without the round, which is
safe only if no other node can be elected while it runs. PySyncObj's followers grant a vote to
any candidate with a newer term and an up-to-date log, even right after hearing the leader
(no leader stickiness, no pre-vote: NOTES.md, "No pre-vote, no lease"): a node cut off from
the leader alone (its own timer fired) is elected by followers that heard the leader a moment
ago, well inside any lease bounded by the election timeout. Adding one needs that stickiness
first (a follower that heard the leader within the minimum election timeout refuses votes).

Consistency of a read against concurrent applies: the tick thread holds `lock` while it
applies an entry or installs a snapshot (node.replica), and a `ReadView` holds it for the
duration of one read (a prefix scan included), so a read sees the store after one whole
entry, never in the middle of one, and never needs a retry. What it costs (about 0.3 µs per
applied entry; cheaper than freezing the tables per read): `python -m loadtest.bench.read_lock`.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterator
from typing import Protocol

from node.acl import AclState
from node.sessions import SessionState
from node.state_machine import KVEntry, KVStateMachine


class StateHolder(Protocol):
    state: KVStateMachine


class Consistency(enum.Enum):
    DEFAULT = "leader"  # the value is what Consul's X-Consul-Effective-Consistency says
    CONSISTENT = "consistent"
    STALE = "stale"


class ReadRoute(enum.Enum):
    LOCAL = "local"  # this node answers from its own store (after a barrier where needed)
    LEADER = "leader"  # forward the read to the leader


class ReadView:
    """One read of the store, under the apply lock. Use as `with node.read_view() as view:`."""

    __slots__ = ("_lock", "_holder", "state")

    def __init__(self, lock: threading.Lock, holder: StateHolder) -> None:
        self._lock, self._holder = lock, holder

    def __enter__(self) -> ReadView:
        self._lock.acquire()
        self.state = self._holder.state  # taken under the lock: a snapshot install swaps it whole
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()

    def get(self, key: str) -> KVEntry | None:
        return self.state.get(key)

    def get_with_index(self, key: str) -> tuple[KVEntry | None, int]:
        return self.state.get_with_index(key)

    def items_with_prefix(self, prefix: str) -> list[tuple[str, KVEntry]]:
        return self.state.items_with_prefix(prefix)

    def prefix_index(self, prefix: str, items: list[tuple[str, KVEntry]]) -> int:
        return self.state.prefix_index(prefix, items)

    def iter_items(self, prefix: str, after: str | None = None) -> Iterator[tuple[str, KVEntry]]:
        """Entries under `prefix` past `after`, lazily: consume them inside the `with`."""
        return self.state.iter_items(prefix, after)

    def acl(self) -> AclState:
        """The ACL records (node/acl.py): read them inside the `with`, copy out what is needed."""
        return self.state.acl

    def sessions(self) -> SessionState:
        """The session records (node/sessions.py): read them inside the `with`, copy out what is needed."""
        return self.state.sessions
