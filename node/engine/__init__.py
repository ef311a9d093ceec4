"""The engine: everything raftkv knows about PySyncObj 0.3.17, and nothing else.

Outside this folder no module imports `pysyncobj` or reads its private names. The public face:

* `RaftEngine`       the PySyncObj peer behind named methods (engine.py)
* `EngineStatus`, `Role`   its status, typed (status.py)
* `DurableJournal`   the Raft log on disk, with the syncs PySyncObj never does (journal.py)
* `CompactionHooks`  PySyncObj's snapshot hooks over node.checkpoint (compaction.py)
* `DurabilityObserver`  what an optional observer of syncs and acknowledgements implements
* `check_version`, `SUPPORTED_PYSYNCOBJ` (version.py)

What the engine relies on in PySyncObj, and why: NOTES.md in this folder; every item there is
pinned by tests/unit/engine/test_pysyncobj_pins.py.
"""

from node.engine.compaction import CompactionHooks
from node.engine.engine import RaftEngine
from node.engine.journal import DurableJournal, JournalDamage, JournalError
from node.engine.observer import DurabilityObserver
from node.engine.status import EngineStatus, Role
from node.engine.version import SUPPORTED_PYSYNCOBJ, check_version

__all__ = [
    "SUPPORTED_PYSYNCOBJ",
    "CompactionHooks",
    "DurabilityObserver",
    "DurableJournal",
    "EngineStatus",
    "JournalDamage",
    "JournalError",
    "RaftEngine",
    "Role",
    "check_version",
]
