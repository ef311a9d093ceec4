"""The one replicated entry point PySyncObj calls: `apply(payload)`.

Never add a second @replicated method, nor rename this one or its consumer: PySyncObj numbers
replicated methods by sorted (version, consumer position, name) and journals the number, so a
new one would remap every entry already journaled (NOTES.md, "Method ids").
"""

from __future__ import annotations

from collections.abc import Callable

from pysyncobj import SyncObjConsumer, replicated

# (index, payload) -> the results PySyncObj hands to the entry's callback; tick thread
ApplyEntry = Callable[[int, bytes], object]


class ReplicatedLog(SyncObjConsumer):
    def __init__(self, apply_entry: ApplyEntry) -> None:
        # Set before SyncObjConsumer.__init__, so PySyncObj does not count it as state.
        self._apply_entry = apply_entry
        super().__init__()

    @replicated
    def apply(self, payload: bytes):
        # PySyncObj bumps raftLastApplied right after this returns: the entry's index is +1.
        return self._apply_entry(self._syncObj.raftLastApplied + 1, payload)
