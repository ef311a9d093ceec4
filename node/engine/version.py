"""The one PySyncObj release the engine's seams were written against.

Every private name, overridden method and message field the engine relies on is listed in
node/engine/NOTES.md and pinned by tests/unit/engine/test_pysyncobj_pins.py: a new release
must be read against both before it is allowed in.
"""

from __future__ import annotations

from pysyncobj.version import VERSION as INSTALLED_PYSYNCOBJ

from node.errors import StartupError

SUPPORTED_PYSYNCOBJ = "0.3.17"


def check_version() -> None:
    """Refuse to start on any other PySyncObj release (StartupError, one line)."""
    if INSTALLED_PYSYNCOBJ != SUPPORTED_PYSYNCOBJ:
        raise StartupError(f"pysyncobj {INSTALLED_PYSYNCOBJ} installed; raftkv needs exactly {SUPPORTED_PYSYNCOBJ}")
