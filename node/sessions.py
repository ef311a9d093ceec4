"""The replicated session records and who holds which lock (pure, deterministic).

Part of the state machine (node.state_machine applies `SessionOp`s and lock operations through
this state, in log order, on every node) and of every snapshot image (`to_meta`/`from_meta`).
What is not here, on purpose, because it needs a clock (Consul keeps both out of its log too):

* TTL timers: the leader keeps them in memory (node/session_keeper.py) and proposes an
  "invalidate" entry when one runs out; renewals only reset the leader's timer.
* lock-delay: when a session ends, each node notes in memory, at the moment it applies the
  entry, that the keys it held may not be acquired for the session's LockDelay
  (node/session_keeper.py); the node that receives an acquire checks it before proposing.

`apply` never raises (PySyncObj retries an entry whose apply raised, forever): a malformed
change is an OpResult-style refusal.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.codec import SessionOp

BEHAVIORS = ("release", "delete")


@dataclass(frozen=True)
class Session:
    id: str
    name: str
    node: str
    lock_delay_ns: int
    behavior: str  # "release" or "delete": what happens to its locks when it ends
    ttl: str  # as the client gave it ("15s"), as Consul shows it; "" for none
    ttl_ns: int  # the same, parsed by the proposer (0: no TTL)
    node_checks: tuple[str, ...]
    create_index: int
    modify_index: int

    def to_row(self) -> list:
        return [self.id, self.name, self.node, self.lock_delay_ns, self.behavior, self.ttl, self.ttl_ns,
                list(self.node_checks), self.create_index, self.modify_index]

    @classmethod
    def from_row(cls, row: list) -> Session:
        if not (isinstance(row, list) and len(row) == 10 and all(type(v) is str for v in (*row[:3], *row[4:6]))
                and all(type(n) is int and n >= 0 for n in (row[3], row[6], row[8], row[9]))
                and isinstance(row[7], list) and all(type(c) is str for c in row[7]) and row[4] in BEHAVIORS):
            raise ValueError(f"malformed session record {row!r:.100}")
        return cls(row[0], row[1], row[2], row[3], row[4], row[5], row[6], tuple(row[7]), row[8], row[9])


class SessionRefused(Exception):
    """A change this state refuses; its message is the one line the client gets."""


class SessionState:
    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.held: dict[str, set[str]] = {}  # session id -> keys it holds (derived from the entries)
        self.index = 0  # index of the last session change (X-Consul-Index of session reads)

    def pristine(self) -> bool:
        """No session was ever created: a snapshot need not carry this state."""
        return self.index == 0 and not self.sessions

    def get(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    def create(self, index: int, op: SessionOp) -> Session:
        """SessionRefused for a duplicate or malformed record."""
        a = op.args
        try:
            session = Session(str(a["id"]), str(a.get("name", "")), str(a["node"]), int(a.get("lock_delay_ns", 0)),
                              str(a.get("behavior", "release")), str(a.get("ttl", "")), int(a.get("ttl_ns", 0)),
                              tuple(str(c) for c in a.get("node_checks", ())), index, index)
        except (KeyError, TypeError, ValueError) as exc:
            raise SessionRefused(f"malformed session change: {exc!r}") from None
        if session.behavior not in BEHAVIORS:
            raise SessionRefused(f"Invalid Behavior setting '{session.behavior}'")
        if session.id in self.sessions:
            raise SessionRefused(f"Session ID {session.id} is already in use")
        self.sessions[session.id] = session
        self.index = index
        return session

    def remove(self, index: int, session_id: str) -> tuple[Session, set[str]] | None:
        """Forget the session; (it, the keys it held), None if there was none."""
        session = self.sessions.pop(session_id, None)
        if session is None:
            return None
        self.index = index
        return session, self.held.pop(session_id, set())

    def hold(self, session_id: str, key: str) -> None:
        self.held.setdefault(session_id, set()).add(key)

    def drop(self, session_id: str | None, key: str) -> None:
        keys = self.held.get(session_id) if session_id else None
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.held[session_id]  # type: ignore[arg-type]

    # -- snapshot image ----------------------------------------------------------------------
    def to_meta(self) -> dict:
        """A copy in plain values (the snapshot writer encodes it on another thread)."""
        return {"index": self.index, "sessions": [s.to_row() for s in self.sessions.values()]}

    @classmethod
    def from_meta(cls, meta: dict) -> SessionState:
        """ValueError for anything `to_meta` does not write. `held` is rebuilt from the entries."""
        state = cls()
        if (not isinstance(meta, dict) or type(meta.get("index")) is not int
                or not isinstance(meta.get("sessions"), list)):
            raise ValueError("malformed sessions")
        state.index = meta["index"]
        for row in meta["sessions"]:
            session = Session.from_row(row)
            state.sessions[session.id] = session
        return state
