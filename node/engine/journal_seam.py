"""Make SyncObj's constructor use our journal instead of its unsynced mmap journal.

PySyncObj 0.3.17 builds its journal with the module-level `createJournal(path)` of
`pysyncobj.syncobj` and offers no parameter for it; we swap that one name for the duration of
the constructor (under a lock: two nodes built at once in one process, as the durability
tests do, must each get their own). Pinned by tests/unit/engine/test_pysyncobj_pins.py.
"""

from __future__ import annotations

import contextlib
import threading

import pysyncobj.syncobj as _pysyncobj_module

from node.engine.journal import DurableJournal

_SEAM_LOCK = threading.Lock()


@contextlib.contextmanager
def journal_installed(journal: DurableJournal):
    """Within this block, a SyncObj being constructed takes `journal` as its log."""
    with _SEAM_LOCK:
        original = _pysyncobj_module.createJournal
        _pysyncobj_module.createJournal = lambda _path: journal
        try:
            yield
        finally:
            _pysyncobj_module.createJournal = original
