"""The key-value state machine: pure, deterministic, no I/O, no clocks, no threads.

`apply(index, payload)` is called with the Raft log index of the entry and the entry's
payload, in log order, on every node; identical inputs give identical states everywhere.
It never raises for a domain outcome (a failed check-and-set is a result): PySyncObj
retries an entry whose apply raised, forever.

Reads (`get`, `items_with_prefix`, ...) from another thread than the one applying must hold
the lock the applier holds (node.replica, node.reads.ReadView): a sorted-table scan is not
safe against a concurrent insert.

Deleted keys leave a tombstone (the delete's index) so that the index of a prefix, and of
an absent key, never goes backwards when keys are deleted (Consul's rule for blocking
queries). The newest MAX_TOMBSTONES are kept; older ones are reaped deterministically.
"""

from __future__ import annotations

import logging
import operator
from collections import deque
from collections.abc import Callable, Iterator
from itertools import islice
from typing import NamedTuple

from node.acl import AclState
from node.codec import (
    AclOp,
    ClusterInitOp,
    CodecError,
    ConfigOp,
    DeleteOp,
    LockOp,
    Op,
    RestoreOp,
    SessionOp,
    SetMemberOp,
    SetOp,
    TxnItem,
    TxnOp,
    decode,
)
from node.entries import (
    WIDE,
    EntryTable,
    KVEntry,
    RecordTable,
    all_packed,
    pack_fields,
    record_keys,
    records_of,
    unpack,
)
from node.layered import LayeredSortedMap
from node.sessions import Session, SessionRefused, SessionState
from node.sorted_records import LOAD, SortedRecords, key_bytes
from snapshots.format import Payload, SnapshotCorrupt, read_bytes

log = logging.getLogger(__name__)

MAX_TOMBSTONES = 10_000
# What session reads wait on (node.watch): reported among an entry's changed keys whenever a
# session is created or ends. No key can take this name (keys never hold a NUL).
SESSIONS_WATCH_KEY = "\x00sessions"


class OpResult(NamedTuple):
    ok: bool
    error: str | None = None
    results: tuple = ()  # txn: (key, KVEntry, include_value) per op that returns an entry
    errors: tuple = ()  # txn: (op_index, reason) when it rolled back


# Called on the tick thread after each applied entry: (changed keys, index). None = everything
# may have changed (a snapshot was loaded).
ChangeListener = Callable[[list[str] | None, int], None]
# Called on the tick thread when a session is created ("created", it, ()), ends ("ended", it, the
# keys it held), or when a snapshot or restore replaced them all ("reset", None, ()).
SessionListener = Callable[[str, Session | None, tuple[str, ...]], None]


class KVStateMachine:
    def __init__(self) -> None:
        self.entries = EntryTable()  # key -> KVEntry, stored packed (node/entries.py)
        self.tombstones = LayeredSortedMap()  # deleted key -> index of the delete
        self._tombstone_order: deque = deque()  # (index, key) in delete order, for reaping
        self.applied_index = 0  # index of the last entry applied (any command)
        self.kv_index = 0  # index of the last entry that changed a key (sets and deletes)
        self.members: dict[str, tuple[str, str]] = {}  # raft address -> (node id, http address)
        # The cluster's identity and configuration, in the log like everything else. Empty
        # voters: not recorded yet (a cluster formed from --peers before its first leader
        # named it); the node then runs on its command-line peers.
        self.cluster_id: str | None = None
        self.voters: tuple[str, ...] = ()
        self.learners: dict[str, str] = {}  # raft address -> node id, catching up to become voters
        self.config_listener: Callable[[], None] | None = None  # tick thread, after a change
        # Added to Raft log indexes to make the store's indexes: raised by a restore so that
        # indexes after it continue above the restored snapshot's.
        self.index_offset = 0
        self.acl = AclState()  # policies and tokens (node/acl.py), replicated like the keys
        self.sessions = SessionState()  # sessions and who holds which lock (node/sessions.py)
        self.listener: ChangeListener | None = None
        self.session_listener: SessionListener | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["listener"] = None  # a callback into the event loop is not state
        state["config_listener"] = None
        state["session_listener"] = None
        return state

    # -- writes (PySyncObj's thread only) -------------------------------------------------

    def apply(self, index: int, payload: bytes) -> list[OpResult]:
        """Apply one log entry; returns one result per op in the entry's batch."""
        self.applied_index = index
        index += self.index_offset
        try:
            ops = decode(payload)
        except CodecError as exc:
            # Not retryable and must not diverge: every node of this version skips it alike.
            log.error("log entry %d skipped: %s", index, exc)
            return [OpResult(False, str(exc))]
        changed: list[str] | None = []
        results = []
        for op in ops:
            if isinstance(op, RestoreOp):
                results.append(self._restore(index, op))
                changed = None  # everything may have changed
            else:
                results.append(self._apply_op(index, op, changed if changed is not None else []))
        if changed != [] and self.listener is not None:
            self.listener(changed, index)
        return results

    def _restore(self, index: int, op: RestoreOp) -> OpResult:
        try:
            header, meta, entries = read_bytes(op.snapshot)
            restored = from_image(meta, entries)
        except (SnapshotCorrupt, ValueError, KeyError, TypeError) as exc:
            return OpResult(False, f"unusable snapshot: {exc}")
        # Indexes continue above everything the snapshot holds (its entries keep theirs).
        top = max(header.index + restored.index_offset, restored.kv_index)
        if index <= top:
            self.index_offset += top + 1 - index
            index = top + 1
        self.entries, self.tombstones = restored.entries, restored.tombstones
        self._tombstone_order = restored._tombstone_order
        if not restored.acl.pristine():  # a snapshot without ACLs (older, or never used) keeps ours
            self.acl = restored.acl
        self.sessions = restored.sessions  # the keys they held are the snapshot's
        self.sessions.index = max(self.sessions.index, index)
        self._session_event("reset", None, ())
        self.kv_index = index
        return OpResult(True)

    def _apply_op(self, index: int, op: Op, changed: list[str]) -> OpResult:
        if isinstance(op, SetOp):
            return self._set(index, op, changed)
        if isinstance(op, DeleteOp):
            return self._delete(index, op, changed)
        if isinstance(op, TxnOp):
            return self._txn(index, op, changed)
        if isinstance(op, SetMemberOp):
            if self.voters and op.raft_addr not in self.voters and op.raft_addr not in self.learners:
                return OpResult(False, f"{op.raft_addr} is not a member")  # removed meanwhile
            self.members[op.raft_addr] = (op.node_id, op.http_addr)
            return OpResult(True)
        if isinstance(op, ClusterInitOp):
            if self.cluster_id is not None:
                return OpResult(False, f"the cluster is already named {self.cluster_id}")
            self.cluster_id = op.cluster_id
            if not self.voters:
                # Named after a configuration was already recorded (a --force-new-cluster reset of a
                # cluster that had not named itself yet): the recorded one stands, not the --peers
                # the proposer started with.
                self.voters = tuple(sorted(op.voters))
            self._config_changed()
            return OpResult(True)
        if isinstance(op, ConfigOp):
            return self._change_config(op)
        if isinstance(op, AclOp):
            return OpResult(*self.acl.apply(index, op))
        if isinstance(op, LockOp):
            return self._lock(index, op, changed)
        if isinstance(op, SessionOp):
            return self._session_op(index, op, changed)
        return OpResult(False, f"unsupported op {type(op).__name__}")

    def _change_config(self, op: ConfigOp) -> OpResult:
        addr = op.raft_addr
        if op.action == "reset":  # the survivor of a lost majority, forced alone (serve --force-new-cluster)
            self.voters, self.learners = (addr,), {}
            self.members = {a: m for a, m in self.members.items() if a == addr}
            self._config_changed()
            return OpResult(True)
        if not self.voters:
            return OpResult(False, "the cluster has not recorded its configuration yet; retry in a second")
        if op.action == "add-learner":
            if addr in self.voters:
                return OpResult(False, f"{addr} is already a voter")
            self.learners[addr] = op.node_id
            if op.http_addr:
                self.members[addr] = (op.node_id, op.http_addr)
        elif op.action == "promote":
            if addr in self.voters:
                return OpResult(True)
            if addr not in self.learners:
                return OpResult(False, f"{addr} is not a learner")
            del self.learners[addr]
            self.voters = tuple(sorted((*self.voters, addr)))
        else:  # remove
            if addr not in self.voters and addr not in self.learners:
                return OpResult(False, f"{addr} is not a member")
            self.learners.pop(addr, None)
            self.voters = tuple(v for v in self.voters if v != addr)
            self.members.pop(addr, None)
        self._config_changed()
        return OpResult(True)

    def _config_changed(self) -> None:
        if self.config_listener is not None:
            self.config_listener()

    def _put(self, index: int, key: str, value: bytes, flags: int, changed: list[str],
             create_index: int | None = None, lock: tuple[int, str | None] | None = None) -> KVEntry:
        """`lock`: (LockIndex, Session) to set; None keeps the key's (a plain write on a locked key
        writes and the lock stays, as Consul)."""
        current = self.entries.get(key)
        if create_index is None:
            create_index = current.create_index if current is not None else index
        if lock is None:
            lock = (current.lock_index, current.session) if current is not None else (0, None)
        held_by = current.session if current is not None else None
        if held_by != lock[1]:
            self.sessions.drop(held_by, key)
            if lock[1] is not None:
                self.sessions.hold(lock[1], key)
        entry = KVEntry(value, flags, create_index, index, *lock)
        self.entries[key] = entry
        self.tombstones.pop(key, None)
        self.kv_index = index
        changed.append(key)
        return entry

    def _remove(self, index: int, key: str, changed: list[str]) -> None:
        self.sessions.drop(self.entries.pop(key).session, key)
        self.tombstones[key] = index
        self._tombstone_order.append((index, key))
        while len(self._tombstone_order) > MAX_TOMBSTONES:
            old_index, old_key = self._tombstone_order.popleft()
            if self.tombstones.get(old_key) == old_index:
                del self.tombstones[old_key]
        self.kv_index = index
        changed.append(key)

    def _set(self, index: int, op: SetOp, changed: list[str]) -> OpResult:
        if op.cas is not None and not _cas_matches(self.entries.get(op.key), op.cas):
            return OpResult(False)
        self._put(index, op.key, op.value, op.flags, changed)
        return OpResult(True)

    def _delete(self, index: int, op: DeleteOp, changed: list[str]) -> OpResult:
        if op.recurse:
            for key in self._keys_with_prefix(op.key):
                self._remove(index, key, changed)
            return OpResult(True)
        current = self.entries.get(op.key)
        if op.cas is not None and (current is None or current.modify_index != op.cas):
            return OpResult(False)
        if current is not None:
            self._remove(index, op.key, changed)
        return OpResult(True)

    # -- sessions and locks (Consul's semantics; README "Sessions and locks") --------------------

    def _lock(self, index: int, op: LockOp, changed: list[str]) -> OpResult:
        """?acquire: take the lock (LockIndex + 1), or update the value if this session holds it
        already; false if another session holds it. ?release: drop it, false unless held by
        this session. Both write the value. An unknown session is an error, not a false."""
        error = self._session_error(op.session)
        if error:
            return OpResult(False, error)
        current = self.entries.get(op.key)
        held_by = current.session if current is not None else None
        lock_index = current.lock_index if current is not None else 0
        if op.acquire:
            if held_by is not None and held_by != op.session:
                return OpResult(False)
            lock: tuple[int, str | None] = (lock_index if held_by == op.session else lock_index + 1, op.session)
        else:
            if held_by is None or held_by != op.session:
                return OpResult(False)
            lock = (lock_index, None)
        self._put(index, op.key, op.value, op.flags, changed, lock=lock)
        return OpResult(True)

    def _session_error(self, session_id: str) -> str | None:
        if not session_id:
            return "missing session"
        if self.sessions.get(session_id) is None:
            return f'invalid session "{session_id}"'
        return None

    def _session_op(self, index: int, op: SessionOp, changed: list[str]) -> OpResult:
        if op.action == "create":
            try:
                session = self.sessions.create(index, op)
            except SessionRefused as exc:
                return OpResult(False, str(exc))
            changed.append(SESSIONS_WATCH_KEY)
            self._session_event("created", session, ())
            return OpResult(True)
        # destroy (a client's) or invalidate (the leader's TTL expiry): the same end, as Consul's.
        # Ending a session that is gone already is a success (destroy is idempotent).
        ended = self.sessions.remove(index, str(op.args.get("id", "")))
        if ended is None:
            return OpResult(True)
        session, keys = ended
        for key in sorted(keys):  # sorted: every node changes them in the same order
            entry = self.entries.get(key)
            if entry is None:
                continue
            if session.behavior == "delete":
                self._remove(index, key, changed)
            else:
                self._put(index, key, entry.value, entry.flags, changed, lock=(entry.lock_index, None))
        changed.append(SESSIONS_WATCH_KEY)
        self._session_event("ended", session, tuple(sorted(keys)))
        return OpResult(True)

    def _session_event(self, kind: str, session: Session | None, keys: tuple[str, ...]) -> None:
        if self.session_listener is not None:
            self.session_listener(kind, session, keys)

    def _txn(self, index: int, op: TxnOp, changed: list[str]) -> OpResult:
        """Check every operation against the state as the earlier ones leave it; apply all
        of them, or none if any check fails (Consul's rollback)."""
        view: dict[str, KVEntry | None] = {}  # key -> entry as seen inside the transaction

        def current(key: str) -> KVEntry | None:
            return view[key] if key in view else self.entries.get(key)

        def tree(prefix: str) -> list[tuple[str, KVEntry]]:
            keys = {k for k in self._keys_with_prefix(prefix)} | {k for k in view if k.startswith(prefix)}
            return [(k, e) for k in sorted(keys) if (e := current(k)) is not None]

        results: list[tuple[str, KVEntry, bool]] = []
        errors: list[tuple[int, str]] = []
        for i, item in enumerate(op.items):
            err = self._txn_step(index, i, item, current, tree, view, results)
            if err:
                errors.append((i, err))
        if errors:
            return OpResult(False, errors=tuple(errors))
        for key, entry in view.items():
            if entry is None:
                if key in self.entries:
                    self._remove(index, key, changed)
            else:
                # As staged: a key deleted earlier in the transaction and set again is a new key.
                self._put(index, key, entry.value, entry.flags, changed, entry.create_index,
                          (entry.lock_index, entry.session))
        # Results carry the entries' final indexes (a set inside the txn gets this entry's index).
        final = tuple((k, self.entries.get(k) or e, inc) for k, e, inc in results)
        return OpResult(True, results=final)

    def _txn_step(self, index, i, item: TxnItem, current, tree, view, results) -> str | None:
        verb, key = item.verb, item.key
        entry = current(key)

        def stage_set(lock: tuple[int, str | None] | None = None) -> None:
            create = entry.create_index if entry is not None else index
            if lock is None:
                lock = (entry.lock_index, entry.session) if entry is not None else (0, None)
            view[key] = KVEntry(item.value, item.flags, create, index, *lock)
            results.append((key, view[key], False))

        if verb in ("lock", "unlock"):
            error = self._session_error(item.session)
            if error:
                return error
            held_by = entry.session if entry is not None else None
            lock_index = entry.lock_index if entry is not None else 0
            if verb == "lock":
                if held_by is not None and held_by != item.session:
                    return f'failed to lock key "{key}", lock is already held'
                stage_set((lock_index if held_by == item.session else lock_index + 1, item.session))
            else:
                if held_by is None or held_by != item.session:
                    return f'failed to unlock key "{key}", lock isn\'t held, or is held by another session'
                stage_set((lock_index, None))
        elif verb == "check-session":
            if entry is None:
                return f'failed to check session, key "{key}" doesn\'t exist'
            if entry.session != (item.session or None):
                held_by = entry.session or ""
                return f'failed session check for key "{key}", current session "{held_by}" != "{item.session}"'
            results.append((key, entry, False))
        elif verb == "set":
            stage_set()
        elif verb == "cas":
            if not _cas_matches(entry, item.index):
                return f'failed to set key "{key}", index is stale'
            stage_set()
        elif verb == "get":
            if entry is None:
                return f'key "{key}" doesn\'t exist'
            results.append((key, entry, True))
        elif verb == "get-tree":
            results.extend((k, e, True) for k, e in tree(key))
        elif verb == "check-index":
            if entry is None or entry.modify_index != item.index:
                return f'current modify index {entry.modify_index if entry else 0} != {item.index}'
            results.append((key, entry, False))
        elif verb == "check-not-exists":
            if entry is not None:
                return f'key "{key}" exists'
        elif verb == "delete":
            view[key] = None
        elif verb == "delete-tree":
            for k, _ in tree(key):
                view[k] = None
        elif verb == "delete-cas":
            if entry is None or entry.modify_index != item.index:
                return f'failed to delete key "{key}", index is stale'
            view[key] = None
        else:
            return f"unknown verb {verb!r}"
        return None

    # -- reads (the applying thread, or under its lock) ----------------------------------------

    def get(self, key: str) -> KVEntry | None:
        return self.entries.get(key)

    def key_index(self, key: str) -> int:
        """The index a read of `key` reflects: its ModifyIndex, else its delete's, else the store's."""
        return self.get_with_index(key)[1]

    def get_with_index(self, key: str) -> tuple[KVEntry | None, int]:
        """`get(key)` and `key_index(key)` with one lookup (every single-key read wants both)."""
        entry = self.entries.get(key)
        if entry is not None:
            return entry, entry.modify_index
        return None, self.tombstones.get(key) or self.kv_index

    def prefix_index(self, prefix: str, items: list[tuple[str, KVEntry]]) -> int:
        """The index of a prefix: highest ModifyIndex in it, or delete index of a key under it."""
        index = max((e.modify_index for _, e in items), default=0)
        for key in self._keys_with_prefix(prefix, self.tombstones):
            index = max(index, self.tombstones.get(key, 0))
        return index or self.kv_index

    def items_with_prefix(self, prefix: str) -> list[tuple[str, KVEntry]]:
        """Entries whose key starts with `prefix`, sorted by key."""
        result = []
        for key in self._keys_with_prefix(prefix):
            entry = self.entries.get(key)
            if entry is not None:
                result.append((key, entry))
        return result

    def iter_items(self, prefix: str, after: str | None = None) -> Iterator[tuple[str, KVEntry]]:
        """Entries under `prefix` in key order, lazily (a bounded scan stops early), starting
        past `after` when given (a scan resumed from where the last one stopped)."""
        start = prefix if after is None or after < prefix else after
        for key in self.entries.irange(minimum=start):
            if not key.startswith(prefix):
                break
            if key == after:
                continue
            entry = self.entries.get(key)
            if entry is not None:
                yield key, entry

    def _keys_with_prefix(self, prefix: str, table: LayeredSortedMap | None = None) -> list[str]:
        table = self.entries if table is None else table
        keys = []
        for key in table.irange(minimum=prefix):
            if not key.startswith(prefix):
                break
            keys.append(key)
        return keys


def _cas_matches(entry: KVEntry | None, cas: int) -> bool:
    """Consul's check-and-set: 0 means 'only if absent', N means 'only if ModifyIndex is N'."""
    if cas == 0:
        return entry is None
    return entry is not None and entry.modify_index == cas


# A snapshot's payload (snapshots/format.py frames it): the metadata of `_image_meta`, then one
# record per key in key order: (key, value, flags, create_index, modify_index, lock_index), and
# the holding session's ID as a 7th field when the key is locked (older files stay as they were).


def _row(key: str, stored) -> tuple:
    """A snapshot record from an entry as the table stores it (node/entries.py)."""
    e = unpack(stored)
    row = (key, e.value, e.flags, e.create_index, e.modify_index, e.lock_index)
    return row if e.session is None else (*row, e.session)


def freeze_image(sm: KVStateMachine) -> tuple[Payload, Callable[[], None]]:
    """Capture `sm` in O(1) for a checkpoint: (image to write from any thread, thaw).

    Call on the tick thread between two applies; the image's entries come from tables frozen
    at that instant, which later writes do not touch. Call `thaw` on the tick thread once the
    image has been written (it folds the writes made meanwhile back in).
    """
    entries_map, tombstones_map = sm.entries, sm.tombstones
    entries = entries_map.freeze()
    tombstones = tombstones_map.freeze()
    meta = _image_meta(sm, tombstones)

    def thaw() -> None:
        entries_map.thaw()
        tombstones_map.thaw()

    return Payload(meta, _chunks(entries), version=3), thaw


CHUNK_KEYS = 2 * LOAD  # the most keys one chunk holds: a piece of the table (node/sorted_records.py)


def _chunks(table: RecordTable) -> Iterator[tuple[list, list]]:
    """A frozen table as format 3's chunks: [its records as it holds them], [wide records] (the
    entries node/entries.py keeps unpacked, as version 1 records), one per piece of the table
    (at most 2,000 keys: the writer thread hands the GIL over between two)."""
    for records, wide in table.record_chunks():
        yield records, [_row(key, entry) for key, entry in wide]


def to_image(sm: KVStateMachine) -> Payload:
    """What a snapshot stores of `sm`. Iterates live structures: call it where nothing mutates
    them (on the tick thread, or in tests)."""
    meta = _image_meta(sm, sm.tombstones)
    entries = (_row(k, s) for k, s in sm.entries.raw_items())
    return Payload(meta, entries)


def _image_meta(sm: KVStateMachine, tombstones) -> dict:
    meta = {
        "applied_index": sm.applied_index,
        "kv_index": sm.kv_index,
        "index_offset": sm.index_offset,
        "members": {raft: list(member) for raft, member in sm.members.items()},
        # bounded by MAX_TOMBSTONES, whatever the size of the store
        "tombstones": [[key, index] for index, key in sm._tombstone_order if tombstones.get(key) == index],
    }
    if sm.cluster_id is not None or sm.voters:  # absent until the cluster is named: older files stay as they were
        meta.update(cluster_id=sm.cluster_id, voters=list(sm.voters), learners=dict(sm.learners))
    if not sm.acl.pristine():  # absent until ACLs are first used: older files stay as they were
        meta["acl"] = sm.acl.to_meta()
    if not sm.sessions.pristine():  # absent until sessions are first used: older files stay as they were
        meta["sessions"] = sm.sessions.to_meta()
    return meta


def without_membership(meta: dict) -> dict:
    """An image's metadata with the cluster it came from forgotten: nodes seeded with it
    offline form a new cluster from their own --peers (and name it anew)."""
    if not meta.get("voters"):
        return meta
    return {**meta, "cluster_id": None, "voters": [], "learners": {}, "members": {}}


def from_image(meta: dict, entries) -> KVStateMachine:
    """The state machine an image describes; SnapshotCorrupt, saying what, for anything that is
    not what `to_image` writes (a checksum proves the bytes intact, not who made them)."""
    sm = KVStateMachine()
    held: list[tuple[str, str]] = []  # (key, session) of every locked key
    try:
        _check_image_meta(meta)
        version = getattr(entries, "version", 1)
        if version > 1:
            sm.entries = EntryTable(_from_chunks(entries, held, version))
        else:
            sm.entries = EntryTable(_record(i, item, held) for i, item in enumerate(entries))
    finally:
        if hasattr(entries, "close"):
            entries.close()  # snapshots.format.read's records hold the file open until closed
    sm.applied_index = meta["applied_index"]
    sm.kv_index = meta["kv_index"]
    sm.index_offset = meta.get("index_offset", 0)
    sm.members = {raft: tuple(member) for raft, member in meta["members"].items()}
    sm.cluster_id = meta.get("cluster_id")  # absent in snapshots written before membership changes
    sm.voters = tuple(meta.get("voters", ()))
    sm.learners = dict(meta.get("learners", {}))
    if "acl" in meta:
        sm.acl = AclState.from_meta(meta["acl"])
    if "sessions" in meta:
        try:
            sm.sessions = SessionState.from_meta(meta["sessions"])
        except ValueError as exc:
            raise SnapshotCorrupt(f"malformed snapshot metadata: {exc}") from None
    for key, session in held:
        if sm.sessions.get(session) is None:
            raise SnapshotCorrupt(f"malformed snapshot: key {key!r:.100} is held by an unknown session")
        sm.sessions.hold(session, key)
    for key, index in meta["tombstones"]:
        sm.tombstones[key] = index
        sm._tombstone_order.append((index, key))
    return sm


def _is_index(value) -> bool:
    return type(value) is int and value >= 0


def _is_str_list(value) -> bool:
    return isinstance(value, list) and all(type(v) is str for v in value)


def _record(i: int, item: tuple, held: list[tuple[str, str]]):
    """(key, the entry as the table stores it): packed straight from the record's fields."""
    if (len(item) not in (5, 6, 7) or type(item[0]) is not str or type(item[1]) is not bytes
            or not all(_is_index(n) for n in item[2:6]) or (len(item) == 7 and type(item[6]) is not str)):
        raise SnapshotCorrupt(f"malformed snapshot record {i}: {item!r:.100}")
    if len(item) == 7:
        held.append((item[0], item[6]))
    return item[0], pack_fields(*item[1:])


def _from_chunks(chunks, held: list[tuple[str, str]], version: int) -> RecordTable:
    """Format 2's or 3's chunks (`_chunks`) as the key table: the packed entries are kept as read
    (format 3: the records themselves), checked in C loops; only the wide records go through
    `_record`."""
    records: list[bytes] = []
    wide: dict = {}
    count = 0
    in_order = version == 3  # format 3's records in strictly increasing key order: no key twice
    last_key = None
    for chunk in chunks:
        if version == 2:
            keys, stored, rows = chunk
            if not set(map(type, keys)) <= {str} or not all_packed(stored):
                raise SnapshotCorrupt(f"malformed snapshot: a chunk after record {count} holds a bad key or entry")
            packed = records_of(keys, stored)  # format.read checked the lengths agree
        else:
            packed, rows = chunk
            stored_keys = record_keys(packed)
            if stored_keys is None:
                raise SnapshotCorrupt(f"malformed snapshot: a chunk after record {count} holds a bad record")
            if stored_keys:
                in_order = in_order and (last_key is None or last_key < stored_keys[0]) \
                    and all(map(operator.lt, stored_keys, islice(stored_keys, 1, None)))
                last_key = stored_keys[-1]
        records.extend(packed)
        in_order = in_order and not rows  # a wide record's key sorts among the records
        for i, row in enumerate(rows):
            key, entry = _record(count + len(packed) + i, tuple(row) if type(row) is list else (), held)
            if type(entry) is bytes:
                records.append(key_bytes(key) + b"\0" + entry)
            else:
                records.append(key_bytes(key) + b"\0" + WIDE)
                wide[key] = entry
        count += len(packed) + len(rows)
    table = SortedRecords(records, presorted=in_order)
    del records
    if not in_order and table.has_twins():
        raise SnapshotCorrupt("malformed snapshot: a key twice")
    return RecordTable.of(table, wide)


def _check_image_meta(meta: dict) -> None:
    problems = [name for name in ("applied_index", "kv_index") if not _is_index(meta.get(name))]
    if not _is_index(meta.get("index_offset", 0)):
        problems.append("index_offset")
    members = meta.get("members")
    if not isinstance(members, dict) or not all(type(a) is str and _is_str_list(m) and len(m) == 2
                                                for a, m in members.items()):
        problems.append("members")
    tombstones = meta.get("tombstones")
    if not isinstance(tombstones, list) or not all(isinstance(t, list) and len(t) == 2 and type(t[0]) is str
                                                   and _is_index(t[1]) for t in tombstones):
        problems.append("tombstones")
    if meta.get("cluster_id") is not None and type(meta["cluster_id"]) is not str:
        problems.append("cluster_id")
    if not _is_str_list(meta.get("voters", [])):
        problems.append("voters")
    learners = meta.get("learners", {})
    if not isinstance(learners, dict) or not all(type(a) is str and type(n) is str for a, n in learners.items()):
        problems.append("learners")
    if problems:
        raise SnapshotCorrupt(f"malformed snapshot metadata: {', '.join(problems)}")
