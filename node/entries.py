"""The key table: one compact Python object per key instead of a tuple, its ints and its value.

A key's entry is what `KVEntry` says, but a million of them as named tuples cost ~330 bytes
each beyond the key (the 6-tuple, two index ints, the value's own bytes object). The table
keeps a small entry as ONE bytes object: a kind byte, its indexes packed, then the value.

    kind 0: modify (u64)                                  create == modify, flags 0, lock 0
    kind 1: create, modify (u64 each)                     flags 0, lock 0
    kind 2: create, modify, flags, lock_index (u64 each)

An entry held by a session, or with a large value (slicing a packed value copies it on
every read), or with a number past u64, stays a `KVEntry`. Readers never see the packing:
`get`, `items` and `[]` give `KVEntry`s; `raw_items` gives what is stored (the snapshot
writer unpacks rows itself).
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Iterator
from typing import NamedTuple

from node.layered import LayeredSortedMap

PACK_MAX_VALUE = 1024  # larger values keep their own bytes object: a read then copies nothing
_U64 = 1 << 64
_K0 = struct.Struct("<BQ")
_K1 = struct.Struct("<BQQ")
_K2 = struct.Struct("<BQQQQ")
_U1 = struct.Struct("<Q")
_U2 = struct.Struct("<QQ")
_U4 = struct.Struct("<QQQQ")


class KVEntry(NamedTuple):
    value: bytes
    flags: int
    create_index: int
    modify_index: int
    lock_index: int = 0  # how many times a session acquired the key: the fencing token
    session: str | None = None  # the session holding the key's lock


Stored = bytes | KVEntry


def pack(e: KVEntry) -> Stored:
    value, flags, create, modify, lock, session = e
    if session is None and flags == 0 and lock == 0 and create == modify and type(value) is bytes \
            and len(value) <= PACK_MAX_VALUE and 0 <= modify < _U64:
        return _K0.pack(0, modify) + value  # the common case, without a second call
    return pack_fields(value, flags, create, modify, lock, session)


def pack_fields(value: bytes, flags: int, create: int, modify: int, lock: int = 0,
                session: str | None = None) -> Stored:
    """`pack(KVEntry(...))` without building the KVEntry first (a snapshot's records)."""
    if session is not None or len(value) > PACK_MAX_VALUE or type(value) is not bytes:
        return KVEntry(value, flags, create, modify, lock, session)
    if flags == 0 and lock == 0 and 0 <= modify < _U64:
        if create == modify:
            return _K0.pack(0, modify) + value
        if 0 <= create < _U64:
            return _K1.pack(1, create, modify) + value
    if all(0 <= n < _U64 for n in (flags, create, modify, lock)):
        return _K2.pack(2, create, modify, flags, lock) + value
    return KVEntry(value, flags, create, modify, lock, session)


def unpack(s: Stored) -> KVEntry:
    if type(s) is not bytes:
        return s  # type: ignore[return-value]
    kind = s[0]
    if kind == 0:
        (m,) = _U1.unpack_from(s, 1)
        return KVEntry(s[9:], 0, m, m, 0)
    if kind == 1:
        c, m = _U2.unpack_from(s, 1)
        return KVEntry(s[17:], 0, c, m, 0)
    c, m, f, lock = _U4.unpack_from(s, 1)
    return KVEntry(s[33:], f, c, m, lock)


_HEADER_BYTES = (_K0.size, _K1.size, _K2.size)  # by kind


def all_packed(stored: list) -> bool:
    """Whether every item of `stored` is a packed entry `unpack` can read (a snapshot's entries
    are checked, not trusted); in C loops, as a million of them are checked at start-up."""
    if not set(map(type, stored)) <= {bytes}:
        return False
    try:
        heads = map(_HEADER_BYTES.__getitem__, map(operator.itemgetter(0), stored))
        return all(map(operator.le, heads, map(len, stored)))
    except IndexError:  # an empty item, or an unknown kind
        return False


class EntryTable(LayeredSortedMap):
    """key -> KVEntry, stored packed (see the module's docstring)."""

    def get(self, key, default=None):
        stored = self._raw(key)
        if stored is None:
            return default
        if type(stored) is bytes and stored[0] == 0:  # unpack's common case, without a second call
            (m,) = _U1.unpack_from(stored, 1)
            return KVEntry(stored[9:], 0, m, m, 0)
        return unpack(stored)

    def __setitem__(self, key, entry: KVEntry) -> None:
        self._set_raw(key, pack(entry))

    def pop(self, key, default=None):
        stored = self._raw(key)
        if stored is None:
            return default
        del self[key]
        return unpack(stored)

    def items(self) -> Iterator:
        for key, stored in self.raw_items():
            yield key, unpack(stored)
