"""PySyncObj's log-compaction hooks (SyncObjConf serializer / deserializer / serializeChecker)
on our Checkpointer (node.checkpoint), which speaks our own types.

PySyncObj calls them on its tick thread:
* `serialize(<dump>.tmp, (last, prev, cluster))`, and renames `<dump>.tmp` over the dump as
  soon as it returns;
* `check()` every tick, until it answers SUCCESS or FAILED once;
* `deserialize(<dump>)` -> `(last, prev, cluster)`, at start-up and for a leader's snapshot.
The shapes are pinned by tests/unit/engine/test_pysyncobj_pins.py (NOTES.md, "Compaction hooks").
"""

from __future__ import annotations

from pysyncobj import SERIALIZER_STATE
from pysyncobj.node import TCPNode

from node.checkpoint import Checkpointer, Progress

_STATE_OF = {
    Progress.IDLE: SERIALIZER_STATE.NOT_SERIALIZING,
    Progress.WRITING: SERIALIZER_STATE.SERIALIZING,
    Progress.DONE: SERIALIZER_STATE.SUCCESS,
    Progress.FAILED: SERIALIZER_STATE.FAILED,
}


class CompactionHooks:
    def __init__(self, checkpointer: Checkpointer) -> None:
        self._checkpointer = checkpointer

    def serialize(self, tmp_file: str, raft_data) -> None:
        last, prev, cluster = raft_data
        self._checkpointer.capture(tmp_file, last, prev, sorted(n.address for n in cluster))

    def check(self) -> int:
        return _STATE_OF[self._checkpointer.progress()]

    def deserialize(self, file_name: str):
        last, prev, members = self._checkpointer.load(file_name)
        return last, prev, {TCPNode(addr) for addr in members}
