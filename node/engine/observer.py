"""An optional observer of a node's durability events (tests/integration/test_durability.py
traces them to check that every acknowledgement follows a sync that covers it)."""

from __future__ import annotations

from typing import Protocol


class DurabilityObserver(Protocol):
    """Called on PySyncObj's tick thread (or the thread that syncs); must be fast and not raise.
    `at` is time.monotonic()."""

    def synced(self, index: int, at: float) -> None:
        """The journal is durable up to `index`."""

    def acknowledged(self, index: int, at: float) -> None:
        """This node is about to acknowledge entries up to `index` to its leader."""
