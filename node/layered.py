"""A sorted map that can be frozen in O(1) while writes go on: the state machine's tables.

`freeze()` hands out the current table as an immutable snapshot and starts recording every
later change in a small delta on top of it; reads see the delta over the frozen table, so
the live view never changes meaning. `thaw()` folds the delta back in once the snapshot has
been written (the work is proportional to the writes made meanwhile, not to the table).

Only the tick thread mutates; readers on other threads see either value of a key, as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sortedcontainers import SortedDict

_DELETED = object()


class LayeredSortedMap:
    _base_type: Any = SortedDict  # what the frozen table is: a sorted mapping (node.entries.RecordTable)

    def __init__(self, items=None) -> None:
        self._base = items if isinstance(items, self._base_type) else self._base_type(items or ())
        self._delta: SortedDict | None = None  # key -> value or _DELETED, while frozen
        self._len = len(self._base)

    # -- snapshots -----------------------------------------------------------------------------

    def freeze(self):
        """The table as it is now; it is not modified until `thaw()`."""
        if self._delta is None:
            self._delta = SortedDict()
        return self._base

    def thaw(self) -> None:
        delta = self._delta
        if delta:
            # Fold into the base while the delta is still attached, so that a reader on another
            # thread never sees a key fall back to its frozen value; detach only when done.
            for key, value in delta.items():
                if value is _DELETED:
                    self._base.pop(key, None)
                else:
                    self._base[key] = value
        self._delta = None

    @property
    def frozen(self) -> bool:
        return self._delta is not None

    # -- mapping -------------------------------------------------------------------------------

    def _raw(self, key, default=None):
        """The stored value (a subclass may store values encoded: node.entries)."""
        delta = self._delta
        if delta is not None and key in delta:
            value = delta[key]
            return default if value is _DELETED else value
        return self._base.get(key, default)

    def get(self, key, default=None):
        return self._raw(key, default)

    def __getitem__(self, key):
        value = self.get(key, _DELETED)
        if value is _DELETED:
            raise KeyError(key)
        return value

    def __contains__(self, key) -> bool:
        return self._raw(key, _DELETED) is not _DELETED

    def _set_raw(self, key, value) -> None:
        delta = self._delta
        if delta is None:
            base = self._base
            base[key] = value
            self._len = len(base)  # not a `key in base` first: a lookup of the RecordTable is a bisect
            return
        if self._raw(key, _DELETED) is _DELETED:
            self._len += 1
        delta[key] = value

    def __setitem__(self, key, value) -> None:
        self._set_raw(key, value)

    def __delitem__(self, key) -> None:
        if key not in self:
            raise KeyError(key)
        if self._delta is None:
            del self._base[key]
        else:
            self._delta[key] = _DELETED
        self._len -= 1

    def pop(self, key, default=None):
        value = self._raw(key, _DELETED)
        if value is _DELETED:
            return default
        del self[key]
        return value

    def __len__(self) -> int:
        return self._len

    def irange(self, minimum=None) -> Iterator:
        """Keys >= minimum in order (the delta merged over the base)."""
        base = self._base.irange(minimum=minimum)
        delta = self._delta
        if not delta:
            yield from base
            return
        changes = iter(delta.irange(minimum=minimum))
        b: Any = next(base, _DELETED)  # a key, or _DELETED once the side is exhausted
        d: Any = next(changes, _DELETED)
        while b is not _DELETED or d is not _DELETED:
            if d is _DELETED or (b is not _DELETED and b < d):
                yield b
                b = next(base, _DELETED)
                continue
            if b is not _DELETED and b == d:
                b = next(base, _DELETED)
            if delta[d] is not _DELETED:
                yield d
            d = next(changes, _DELETED)

    def keys(self) -> Iterator:
        return self.irange()

    def __iter__(self) -> Iterator:
        return self.irange()

    def raw_items(self) -> Iterator:
        for key in self.irange():
            yield key, self._raw(key)

    def items(self) -> Iterator:
        return self.raw_items()

    def __eq__(self, other) -> bool:
        return dict(self.items()) == dict(other.items() if hasattr(other, "items") else other)
