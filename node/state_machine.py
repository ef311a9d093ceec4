"""The key-value state machine: pure, deterministic, no I/O, no clocks, no threads.

`apply(index, payload)` is called with the Raft log index of the entry and the entry's
payload, in log order, on every node; identical inputs give identical states everywhere.
It never raises for a domain outcome (a failed check-and-set is a result): PySyncObj
retries an entry whose apply raised, forever.

Reads (`get`, `items_with_prefix`, ...) run on the asyncio thread while apply runs on
PySyncObj's thread. Entries are immutable tuples replaced whole, so a single-key read is
atomic under the GIL; prefix scans copy the matching keys first (see `items_with_prefix`).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from sortedcontainers import SortedDict

from node.codec import CodecError, DeleteOp, Op, SetMemberOp, SetOp, decode

log = logging.getLogger(__name__)


class KVEntry(NamedTuple):
    value: bytes
    flags: int
    create_index: int
    modify_index: int
    lock_index: int = 0


class OpResult(NamedTuple):
    ok: bool
    error: str | None = None


class KVStateMachine:
    def __init__(self) -> None:
        self.entries: SortedDict = SortedDict()  # key -> KVEntry
        self.applied_index = 0  # index of the last entry applied (any command)
        self.kv_index = 0  # index of the last entry that changed a key (sets and deletes)
        self.members: dict[str, tuple[str, str]] = {}  # raft address -> (node id, http address)

    # -- writes (PySyncObj's thread only) -------------------------------------------------

    def apply(self, index: int, payload: bytes) -> list[OpResult]:
        """Apply one log entry; returns one result per op in the entry's batch."""
        self.applied_index = index
        try:
            ops = decode(payload)
        except CodecError as exc:
            # Not retryable and must not diverge: every node of this version skips it alike.
            log.error("log entry %d skipped: %s", index, exc)
            return [OpResult(False, str(exc))]
        return [self._apply_op(index, op) for op in ops]

    def _apply_op(self, index: int, op: Op) -> OpResult:
        if isinstance(op, SetOp):
            return self._set(index, op)
        if isinstance(op, DeleteOp):
            return self._delete(index, op)
        if isinstance(op, SetMemberOp):
            self.members[op.raft_addr] = (op.node_id, op.http_addr)
            return OpResult(True)
        return OpResult(False, f"unsupported op {type(op).__name__}")

    def _set(self, index: int, op: SetOp) -> OpResult:
        current = self.entries.get(op.key)
        if op.cas is not None:
            if op.cas == 0 and current is not None:
                return OpResult(False)
            if op.cas != 0 and (current is None or current.modify_index != op.cas):
                return OpResult(False)
        create_index = current.create_index if current is not None else index
        lock_index = current.lock_index if current is not None else 0
        self.entries[op.key] = KVEntry(op.value, op.flags, create_index, index, lock_index)
        self.kv_index = index
        return OpResult(True)

    def _delete(self, index: int, op: DeleteOp) -> OpResult:
        if op.recurse:
            doomed = self._keys_with_prefix(op.key)
            for key in doomed:
                del self.entries[key]
            if doomed:  # like Consul: deleting nothing changes no index
                self.kv_index = index
            return OpResult(True)
        current = self.entries.get(op.key)
        if op.cas is not None and (current is None or current.modify_index != op.cas):
            return OpResult(False)
        if current is not None:
            del self.entries[op.key]
            self.kv_index = index  # deletes advance the index a prefix watch sees
        return OpResult(True)

    # -- reads (any thread) -----------------------------------------------------------------

    def get(self, key: str) -> KVEntry | None:
        return self.entries.get(key)

    def items_with_prefix(self, prefix: str) -> list[tuple[str, KVEntry]]:
        """Entries whose key starts with `prefix`, sorted by key."""
        result = []
        for key in self._keys_with_prefix(prefix):
            entry = self.entries.get(key)
            if entry is not None:
                result.append((key, entry))
        return result

    def _keys_with_prefix(self, prefix: str) -> list[str]:
        # Called from the asyncio thread while the tick thread may insert or delete: a
        # SortedDict iterator can then fail or skip, so retry; the next call sees a settled dict.
        for _ in range(100):
            try:
                keys = []
                for key in self.entries.irange(minimum=prefix):
                    if not key.startswith(prefix):
                        break
                    keys.append(key)
                return keys
            except (RuntimeError, ValueError, IndexError, KeyError):
                continue
        return [k for k in list(self.entries.keys()) if k.startswith(prefix)]
