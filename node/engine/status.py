"""The engine's status, typed: what node code reads of PySyncObj's `getStatus()`.

PySyncObj reports its state as a dict of string keys and magic numbers (state 0/1/2, a
peer's connection 2/0 under `partner_node_status_server_<address>`); this module is the one
place that reads them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pysyncobj.syncobj import _RAFT_STATE


class Role(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


_ROLE_OF_STATE = {
    _RAFT_STATE.FOLLOWER: Role.FOLLOWER,
    _RAFT_STATE.CANDIDATE: Role.CANDIDATE,
    _RAFT_STATE.LEADER: Role.LEADER,
}
_PEER_KEY = "partner_node_status_server_"  # + the peer's address; the value is 2 when connected
_CONNECTED = 2


def role_of(raft_state: int) -> Role:
    """PySyncObj's raft state number (as `onStateChanged` passes it) as a Role."""
    return _ROLE_OF_STATE[raft_state]


@dataclass(frozen=True)
class EngineStatus:
    role: Role
    term: int
    commit_index: int
    applied_index: int
    log_len: int  # entries in the log (since the last snapshot)
    unreachable_peers: tuple[str, ...]  # voters with no open Raft connection now, sorted

    @classmethod
    def from_pysyncobj(cls, raw: dict) -> EngineStatus:
        return cls(
            role=role_of(raw["state"]),
            term=raw["raft_term"],
            commit_index=raw["commit_idx"],
            applied_index=raw["last_applied"],
            log_len=raw["log_len"],
            unreachable_peers=tuple(sorted(k[len(_PEER_KEY):] for k, v in raw.items()
                                           if k.startswith(_PEER_KEY) and v != _CONNECTED)),
        )
