"""This node's copy of the replicated state: the state machine the engine applies entries to.

The engine calls `apply(index, payload)` for each committed entry and `install(state)` when a
snapshot replaces the whole state (both on its tick thread). Watchers (node.watch) hear of
every change, and the membership (`on_config`) of every configuration change, either way.
Readers on the event loop take `state` afresh each time: it is swapped whole by `install`.
"""

from __future__ import annotations

from collections.abc import Callable

from node.state_machine import KVStateMachine, OpResult
from node.watch import WatchHub


class Replica:
    def __init__(self, watch_hub: WatchHub, on_config: Callable[[], None] | None = None) -> None:
        self.watch_hub = watch_hub
        self.on_config = on_config
        self.state = KVStateMachine()
        self.state.listener = watch_hub.on_apply
        self.state.config_listener = on_config

    def apply(self, index: int, payload: bytes) -> list[OpResult]:
        """Tick thread: the committed entry at `index`."""
        return self.state.apply(index, payload)

    def install(self, state: KVStateMachine) -> None:
        """Tick thread: replace the state by one loaded from a snapshot."""
        state.listener = self.watch_hub.on_apply
        state.config_listener = self.on_config
        self.state = state
        self.watch_hub.on_apply(None, state.applied_index)  # every watcher re-checks
        if self.on_config is not None and state.voters:
            self.on_config()
