"""This node's copy of the replicated state: the state machine the engine applies entries to.

The engine calls `apply(index, payload)` for each committed entry and `install(state)` when a
snapshot replaces the whole state (both on its tick thread). Watchers (node.watch) hear of
every change, and the membership (`on_config`) of every configuration change, either way.
Both hold `lock` while they change the state, and so does the checkpoint while it freezes and
thaws the tables; a reader on the event loop holds it for one read (node.reads.ReadView).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from node.reads import ReadView
from node.state_machine import KVStateMachine, OpResult, SessionListener
from node.watch import WatchHub


class Replica:
    def __init__(self, watch_hub: WatchHub, on_config: Callable[[], None] | None = None,
                 on_session: SessionListener | None = None) -> None:
        self.watch_hub = watch_hub
        self.on_config = on_config
        self.on_session = on_session  # sessions created and ended (node/session_keeper.py)
        self.lock = threading.Lock()  # held for one apply, install, freeze or thaw; or one read
        self.state = KVStateMachine()
        self.state.listener = watch_hub.on_apply
        self.state.config_listener = on_config
        self.state.session_listener = on_session

    def apply(self, index: int, payload: bytes) -> list[OpResult]:
        """Tick thread: the committed entry at `index`."""
        with self.lock:
            return self.state.apply(index, payload)

    def install(self, state: KVStateMachine) -> None:
        """Tick thread: replace the state by one loaded from a snapshot."""
        state.listener = self.watch_hub.on_apply
        state.config_listener = self.on_config
        state.session_listener = self.on_session
        with self.lock:
            self.state = state
        self.watch_hub.on_apply(None, state.applied_index)  # every watcher re-checks
        if self.on_session is not None:
            self.on_session("reset", None, ())
        if self.on_config is not None and state.voters:
            self.on_config()

    def read_view(self) -> ReadView:
        """One consistent read of the state (event loop): `with replica.read_view() as view:`."""
        return ReadView(self.lock, self)
