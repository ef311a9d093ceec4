"""Versioned command codec: the bytes that travel through the Raft log.

Every log entry written by raftkv is one call of the single replicated entry point
(`node.engine.replicated.ReplicatedLog.apply`) with one argument: a payload produced here. PySyncObj numbers
replicated methods by sorted name, so we never add a second one; new operations get new,
never reused, op codes in this module instead, and old journals keep decoding.

Payload: msgpack array ``[CODEC_VERSION, [op, op, ...]]``; each op is an array whose first
element is its op code. A payload carries a batch: the proposer coalesces concurrent
writes into one log entry, and all ops of a batch share that entry's index.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

CODEC_VERSION = 1

# Op codes are part of the on-disk format: append new ones, never renumber or reuse.
OP_SET = 1
OP_DELETE = 2
OP_SET_MEMBER = 3
OP_TXN = 4
OP_RESTORE = 5
OP_CLUSTER_INIT = 6
OP_CONFIG = 7
OP_ACL = 8
OP_SESSION = 9
OP_LOCK = 10

# Membership changes carried by ConfigOp (strings on disk; append only).
CONFIG_ACTIONS = frozenset({"add-learner", "promote", "remove", "reset"})  # reset: force a new one-voter cluster

# ACL changes carried by AclOp (strings on disk; append only). What each means: node/acl.py.
ACL_ACTIONS = frozenset({"bootstrap", "policy-set", "policy-delete", "token-set", "token-delete"})

# Session changes carried by SessionOp (strings on disk; append only). What each means: node/sessions.py.
SESSION_ACTIONS = frozenset({"create", "destroy", "invalidate"})  # invalidate: the leader's TTL expiry

# Consul's KV transaction verbs this codec carries (strings on disk; append only).
TXN_VERBS = frozenset({
    "set", "cas", "get", "get-tree", "check-index", "check-not-exists", "delete", "delete-tree", "delete-cas",
    "lock", "unlock", "check-session",
})


class CodecError(ValueError):
    """A payload that this version cannot decode (corrupt, or written by a newer version)."""


@dataclass(frozen=True, slots=True)
class SetOp:
    key: str
    value: bytes
    flags: int = 0
    cas: int | None = None  # None: unconditional; 0: only if absent; N: only if ModifyIndex == N


@dataclass(frozen=True, slots=True)
class DeleteOp:
    key: str
    recurse: bool = False
    cas: int | None = None  # N > 0: only if ModifyIndex == N


@dataclass(frozen=True, slots=True)
class SetMemberOp:
    """Record a node's HTTP address under its Raft address, so peers can forward to it."""

    raft_addr: str
    http_addr: str
    node_id: str


@dataclass(frozen=True, slots=True)
class TxnItem:
    verb: str
    key: str
    value: bytes = b""
    flags: int = 0
    index: int = 0
    session: str = ""  # lock, unlock, check-session


@dataclass(frozen=True, slots=True)
class TxnOp:
    """Consul KV operations applied atomically: all or none, in one log entry."""

    items: tuple[TxnItem, ...]


@dataclass(frozen=True, slots=True)
class RestoreOp:
    """Replace the whole store by a snapshot file's content (PUT /v1/snapshot)."""

    snapshot: bytes


@dataclass(frozen=True, slots=True)
class ClusterInitOp:
    """Name the cluster and record its first voters; the first one committed wins."""

    cluster_id: str
    voters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ConfigOp:
    """One membership change: add a learner, promote it to voter, or remove a member."""

    action: str
    raft_addr: str
    node_id: str = ""
    http_addr: str = ""


@dataclass(frozen=True, slots=True)
class AclOp:
    """One change of the replicated ACL state: `args` is a map of plain values (never a token
    secret, only its SHA-256), checked and applied by node.acl.AclState."""

    action: str
    args: dict


@dataclass(frozen=True, slots=True)
class SessionOp:
    """Create, destroy or invalidate a session: `args` is a map of plain values, the session's
    ID among them (a uuid4 chosen by the proposer: apply must be deterministic)."""

    action: str
    args: dict


@dataclass(frozen=True, slots=True)
class LockOp:
    """`PUT /v1/kv/<key>?acquire=<session>` (acquire) or `?release=<session>` (not acquire)."""

    key: str
    value: bytes
    flags: int
    session: str
    acquire: bool


Op = SetOp | DeleteOp | SetMemberOp | TxnOp | RestoreOp | ClusterInitOp | ConfigOp | AclOp | SessionOp | LockOp


def _txn_item_to_list(i: TxnItem) -> list:
    row = [i.verb, i.key, i.value, i.flags, i.index]
    return row + [i.session] if i.session else row  # without a session: as entries were before sessions


def _txn_item_from_list(row: list) -> TxnItem:
    if len(row) not in (5, 6) or (len(row) == 6 and type(row[5]) is not str):
        raise CodecError("malformed transaction operation")
    return TxnItem(row[0], row[1], bytes(row[2]), row[3], row[4], *row[5:6])


def _op_to_list(op: Op) -> list:
    if isinstance(op, SetOp):
        return [OP_SET, op.key, op.value, op.flags, op.cas]
    if isinstance(op, DeleteOp):
        return [OP_DELETE, op.key, op.recurse, op.cas]
    if isinstance(op, SetMemberOp):
        return [OP_SET_MEMBER, op.raft_addr, op.http_addr, op.node_id]
    if isinstance(op, RestoreOp):
        return [OP_RESTORE, op.snapshot]
    if isinstance(op, TxnOp):
        return [OP_TXN, [_txn_item_to_list(i) for i in op.items]]
    if isinstance(op, ClusterInitOp):
        return [OP_CLUSTER_INIT, op.cluster_id, list(op.voters)]
    if isinstance(op, ConfigOp):
        return [OP_CONFIG, op.action, op.raft_addr, op.node_id, op.http_addr]
    if isinstance(op, AclOp):
        return [OP_ACL, op.action, op.args]
    if isinstance(op, SessionOp):
        return [OP_SESSION, op.action, op.args]
    if isinstance(op, LockOp):
        return [OP_LOCK, op.key, op.value, op.flags, op.session, op.acquire]
    raise TypeError(f"not an op: {op!r}")


def _op_from_list(item: list) -> Op:
    code = item[0]
    if code == OP_SET:
        return SetOp(item[1], bytes(item[2]), int(item[3]), item[4])
    if code == OP_DELETE:
        return DeleteOp(item[1], bool(item[2]), item[3])
    if code == OP_SET_MEMBER:
        return SetMemberOp(item[1], item[2], item[3])
    if code == OP_RESTORE:
        return RestoreOp(bytes(item[1]))
    if code == OP_TXN:
        return TxnOp(tuple(_txn_item_from_list(row) for row in item[1]))
    if code == OP_CLUSTER_INIT:
        return ClusterInitOp(str(item[1]), tuple(str(v) for v in item[2]))
    if code == OP_CONFIG:
        if item[1] not in CONFIG_ACTIONS:
            raise CodecError(f"unknown membership change {item[1]!r}")
        return ConfigOp(item[1], item[2], item[3], item[4])
    if code == OP_ACL:
        if item[1] not in ACL_ACTIONS or not isinstance(item[2], dict):
            raise CodecError(f"unknown ACL change {item[1]!r}")
        return AclOp(item[1], item[2])
    if code == OP_SESSION:
        if item[1] not in SESSION_ACTIONS or not isinstance(item[2], dict):
            raise CodecError(f"unknown session change {item[1]!r}")
        return SessionOp(item[1], item[2])
    if code == OP_LOCK:
        if type(item[1]) is not str or type(item[4]) is not str:
            raise CodecError("malformed lock operation")
        return LockOp(item[1], bytes(item[2]), int(item[3]), item[4], bool(item[5]))
    raise CodecError(f"unknown op code {code}")


def encode(ops: list[Op]) -> bytes:
    return msgpack.packb([CODEC_VERSION, [_op_to_list(op) for op in ops]], use_bin_type=True)


def decode(payload: bytes) -> list[Op]:
    try:
        version, items = msgpack.unpackb(payload, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise CodecError(f"undecodable payload: {exc}") from None
    if not isinstance(version, int) or version > CODEC_VERSION or version < 1:
        raise CodecError(f"unsupported codec version {version!r}")
    try:
        return [_op_from_list(item) for item in items]
    except (IndexError, TypeError, ValueError) as exc:
        raise CodecError(f"malformed op: {exc}") from None


# The ops whose batches the leader may merge into one entry (node.engine.merge): data changes that
# take their index from the entry. Membership, restores and ACL changes keep an entry of their own.
MERGEABLE_OPS = frozenset({OP_SET, OP_DELETE, OP_TXN, OP_SESSION, OP_LOCK})


def mergeable_rows(payload: bytes) -> list | None:
    """The ops of `payload` as encoded rows, ready for `merged_payload`; None when it must stay an
    entry of its own: undecodable, a newer version's, or holding an op outside MERGEABLE_OPS.
    Every row is checked as `decode` would, so one bad batch never spoils a merged entry."""
    try:
        version, rows = msgpack.unpackb(payload, raw=False)
        if type(version) is not int or not 1 <= version <= CODEC_VERSION or type(rows) is not list or not rows:
            return None
        for row in rows:
            if type(row) is not list or not row or row[0] not in MERGEABLE_OPS:
                return None
            _op_from_list(row)
    except Exception:  # noqa: BLE001 - msgpack and the row checks raise several unrelated types
        return None
    return rows


def merged_payload(batches: list[list]) -> bytes:
    """One payload holding the ops of every batch (rows from `mergeable_rows`), in order: it
    decodes, on any node of any release, to the concatenation of the batches' ops."""
    return msgpack.packb([CODEC_VERSION, [row for rows in batches for row in rows]], use_bin_type=True)
