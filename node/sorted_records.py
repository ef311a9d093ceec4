"""A sorted list of bytes records, as short lists of at most 2 * LOAD (sortedcontainers' layout,
without its positional index): the key table keeps every key and its entry in ONE bytes object
in here (node/entries.py), with no dict and no separate list of keys.

A record starts with its key encoded by `key_bytes` and ends the key with a NUL byte: records
then sort as their keys do (str order is code point order, which UTF-8 keeps), and a key is
found by bisecting for `key_bytes(key) + b"\\0"`. Keys never hold a NUL (api/params.py); the
encoding escapes NUL and 0x01 anyway, so that any str is a key (a bad log or snapshot must not
crash a node) and order is kept.
"""

from __future__ import annotations

import operator
from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from itertools import islice, repeat

LOAD = 1000


def key_bytes(key: str) -> bytes:
    if "\x00" in key or "\x01" in key:  # never from the API: kept in order, and unambiguous
        return key.encode("utf-8", "surrogatepass").replace(b"\x01", b"\x01\x02").replace(b"\x00", b"\x01\x01")
    return key.encode("utf-8", "surrogatepass")


def key_str(data: bytes) -> str:
    if b"\x01" in data:
        data = data.replace(b"\x01\x01", b"\x00").replace(b"\x01\x02", b"\x01")
    return data.decode("utf-8", "surrogatepass")


class SortedRecords:
    """Bytes records in sorted order; the tick thread mutates, a reader holds the apply lock."""

    __slots__ = ("_lists", "_maxes", "_len")

    def __init__(self, records: Iterable[bytes] = (), presorted: bool = False) -> None:
        """`presorted`: `records` is a list already in strictly increasing order (a snapshot's,
        checked by its reader), kept as it is instead of sorted again."""
        ordered = records if presorted and isinstance(records, list) else sorted(records)
        self._lists = [ordered[i:i + LOAD] for i in range(0, len(ordered), LOAD)]
        self._maxes = [part[-1] for part in self._lists]
        self._len = len(ordered)

    def __len__(self) -> int:
        return self._len

    def find(self, prefix: bytes) -> tuple[int, int, bytes] | None:
        """(list, position, record) of the first record that starts with `prefix`, if any does
        (a key's prefix is `key_bytes(key) + b"\\0"`: at most one record has it)."""
        pos = bisect_left(self._maxes, prefix)
        if pos == len(self._maxes):
            return None
        part = self._lists[pos]
        idx = bisect_left(part, prefix)
        record = part[idx]
        return (pos, idx, record) if record.startswith(prefix) else None

    def replace(self, pos: int, idx: int, record: bytes) -> None:
        """Put `record` where `find` found one with the same key (the order does not change)."""
        part = self._lists[pos]
        part[idx] = record
        if idx == len(part) - 1:
            self._maxes[pos] = record

    def add(self, record: bytes) -> None:
        maxes = self._maxes
        if not maxes:
            self._lists.append([record])
            maxes.append(record)
            self._len = 1
            return
        pos = bisect_left(maxes, record)
        if pos == len(maxes):
            pos -= 1
            self._lists[pos].append(record)
            maxes[pos] = record
        else:
            insort(self._lists[pos], record)
        self._len += 1
        part = self._lists[pos]
        if len(part) > 2 * LOAD:  # split in two halves
            half = part[LOAD:]
            del part[LOAD:]
            maxes[pos] = part[-1]
            self._lists.insert(pos + 1, half)
            maxes.insert(pos + 1, half[-1])

    def delete(self, pos: int, idx: int) -> None:
        part = self._lists[pos]
        del part[idx]
        self._len -= 1
        if not part:
            del self._lists[pos], self._maxes[pos]
        elif idx == len(part):
            self._maxes[pos] = part[-1]

    def from_prefix(self, prefix: bytes) -> Iterator[bytes]:
        """Records >= prefix, in order. The tick thread must not change the list meanwhile."""
        pos = bisect_left(self._maxes, prefix)
        if pos == len(self._maxes):
            return
        idx = bisect_left(self._lists[pos], prefix)
        lists = self._lists
        yield from lists[pos][idx:]
        for part in lists[pos + 1:]:
            yield from part

    def has_twins(self) -> bool:
        """Whether two records hold the same key (a snapshot's records are checked, not trusted);
        in C loops, a piece at a time."""
        previous = None
        for part in self._lists:
            keys = list(map(bytes.__getitem__, part, map(slice, map(bytes.index, part, repeat(0)))))
            if keys[0] == previous or any(map(operator.eq, keys, islice(keys, 1, None))):
                return True
            previous = keys[-1]
        return False

    def parts(self) -> Iterator[list[bytes]]:
        """The records in sorted pieces of at most 2 * LOAD (the snapshot writer's chunks)."""
        yield from self._lists

    def __iter__(self) -> Iterator[bytes]:
        for part in self._lists:
            yield from part
