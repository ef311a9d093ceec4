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

The key and its packed entry are then one object too (`RecordTable`): `key UTF-8, NUL, packed
entry` in a sorted list (node/sorted_records.py). For 10^6 keys of 16 bytes with 128-byte
values in one process: 209 bytes a key, against 288 with a `SortedDict` of key str -> packed
entry (the str 64, the dict slot ~42 and the sorted key list ~9 are gone; the record is 192).
"""

from __future__ import annotations

import operator
import struct
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from itertools import repeat
from typing import NamedTuple

from node.layered import LayeredSortedMap
from node.sorted_records import SortedRecords, key_bytes, key_str

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


WIDE = b"\xff"  # a record's entry part when the entry is a KVEntry, kept in RecordTable._wide


_KINDS = bytes(range(len(_HEADER_BYTES)))  # the kind bytes a packed entry may start with
_LONGEST_HEADER = max(_HEADER_BYTES)


def record_keys(records: list) -> list[bytes] | None:
    """The keys (as stored, escaped) of `records` when every item is a record RecordTable keeps
    of a packed entry: a key `key_str` reads back as written, NUL, an entry `unpack` can read;
    None for anything else (a snapshot's records are checked, not trusted). In C loops and
    comprehensions, as a million of them are checked at start-up (restart time: BENCHMARKS.md)."""
    if not set(map(type, records)) <= {bytes}:
        return None
    try:
        cut = list(map(bytes.index, records, repeat(0)))  # ValueError: no NUL
    except ValueError:
        return None
    if not records:
        return []
    # Each record needs, after its NUL, a known kind byte and that kind's whole header. When the
    # shortest has room for the longest header (values are rarely shorter than 24 bytes), the
    # kinds alone are left to check; otherwise each record's length against its kind's header.
    room = min(map(operator.sub, map(len, records), cut)) - 1  # bytes after the NUL, the fewest
    if room < 1:
        return None
    kinds = bytes([r[i + 1] for r, i in zip(records, cut, strict=True)])
    if kinds.translate(None, _KINDS):  # an unknown kind, WIDE among them
        return None
    if room < _LONGEST_HEADER and not all(len(r) - i - 1 >= _HEADER_BYTES[r[i + 1]]
                                          for r, i in zip(records, cut, strict=True)):
        return None
    keys = [r[:i] for r, i in zip(records, cut, strict=True)]
    joined = b"\n".join(keys)  # a separator, so that no key borrows another's bytes to decode
    try:
        joined.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None
    if b"\x01" in joined and not all(key_bytes(key_str(k)) == k for k in keys):  # escapes (never from the API)
        return None
    return keys


class RecordTable:
    """key -> stored entry, as the base of an EntryTable: each key and its packed entry in ONE
    bytes record, `key_bytes(key) + b"\0" + packed`, in SortedRecords (no dict, no key str, no
    sorted key list: ~200 bytes a key of 16 + 128 bytes, instead of ~290). A KVEntry (a wide
    entry) is a record ending in WIDE, and the entry itself is in `_wide`."""

    __slots__ = ("_records", "_wide")

    def __init__(self, items: Iterable = ()) -> None:
        table = dict(items)  # (key, stored) pairs, the last of a key wins as in a dict
        self._wide = {k: s for k, s in table.items() if type(s) is not bytes}
        self._records = SortedRecords(key_bytes(k) + b"\0" + (s if type(s) is bytes else WIDE)
                                      for k, s in table.items())

    @classmethod
    def of(cls, records: SortedRecords, wide: dict) -> RecordTable:
        table = cls.__new__(cls)
        table._records, table._wide = records, wide
        return table

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key, default=None):
        # SortedRecords.find inlined: every read and write of a key comes here
        prefix = key_bytes(key) + b"\0"
        records = self._records
        maxes = records._maxes
        pos = bisect_left(maxes, prefix)
        if pos == len(maxes):
            return default
        part = records._lists[pos]
        record = part[bisect_left(part, prefix)]
        if not record.startswith(prefix):
            return default
        stored = record[len(prefix):]
        return self._wide[key] if stored == WIDE else stored

    def __contains__(self, key) -> bool:
        return self.get(key) is not None

    def __setitem__(self, key, stored) -> None:
        prefix = key_bytes(key) + b"\0"
        if type(stored) is bytes:
            record = prefix + stored
            self._wide.pop(key, None)
        else:
            record = prefix + WIDE
            self._wide[key] = stored
        found = self._records.find(prefix)
        if found is None:
            self._records.add(record)
        else:
            self._records.replace(found[0], found[1], record)

    def pop(self, key, default=None):
        prefix = key_bytes(key) + b"\0"
        found = self._records.find(prefix)
        if found is None:
            return default
        self._records.delete(found[0], found[1])
        stored = found[2][len(prefix):]
        return self._wide.pop(key) if stored == WIDE else stored

    def __delitem__(self, key) -> None:
        if self.pop(key, WIDE) is WIDE:
            raise KeyError(key)

    def irange(self, minimum=None) -> Iterator[str]:
        for record in self._records.from_prefix(b"" if minimum is None else key_bytes(minimum)):
            yield key_str(record[:record.index(0)])

    def __iter__(self) -> Iterator[str]:
        return self.irange()

    def keys(self) -> Iterator[str]:
        return self.irange()

    def items(self) -> Iterator:
        for key in self.irange():
            yield key, self.get(key)

    def record_chunks(self) -> Iterator[tuple[list[bytes], list[tuple[str, KVEntry]]]]:
        """The table in pieces of at most 2,000 keys, in key order, as format 3 stores them:
        (the records of packed entries as the table holds them, (key, KVEntry) of the wide ones
        among them). No per-key work unless a piece holds a wide entry: the snapshot writer
        holds the GIL the Raft and HTTP threads need."""
        placeholders = {key_bytes(k) + b"\0" + WIDE: k for k in self._wide}
        ordered = sorted(placeholders)
        for part in self._records.parts():
            lo, hi = bisect_left(ordered, part[0]), bisect_right(ordered, part[-1])
            if lo == hi:
                yield part, []
                continue
            held = set(ordered[lo:hi])
            yield [r for r in part if r not in held], [(placeholders[r], self._wide[placeholders[r]])
                                                       for r in ordered[lo:hi]]


def records_of(keys: list[str], stored: list[bytes]) -> list[bytes]:
    """RecordTable's records of packed entries, built in C loops (a snapshot's chunk at load)."""
    joined = "\x00\n".join(keys) + "\x00"
    if joined.count("\n") == len(keys) - 1 and joined.count("\x00") == len(keys) and "\x01" not in joined:
        try:
            prefixes = joined.encode().split(b"\n")
        except UnicodeEncodeError:  # a surrogate
            prefixes = [key_bytes(k) + b"\0" for k in keys]
    else:
        prefixes = [key_bytes(k) + b"\0" for k in keys]
    return list(map(bytes.__add__, prefixes, stored))


class EntryTable(LayeredSortedMap):
    """key -> KVEntry, stored packed (see the module's docstring) in a RecordTable."""

    _base_type = RecordTable

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
