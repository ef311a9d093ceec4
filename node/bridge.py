"""The one door between PySyncObj's tick thread and the event loop.

The tick thread (and the snapshot writer) never touch loop objects: every event they produce
(a proposal's result, keys applied, a role or leader change, a snapshot written) is handed
to the loop with `LoopBridge.post`, which is the only `call_soon_threadsafe` in the node.
The loop learns nothing by polling: a waiter awaits a `Pulse` that the event fires, then
re-checks its own condition (`wait_until`).

Threads: `attach` once, from the loop, before serving; `post` from any thread; `Pulse` and
`wait_until` on the loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable


class LoopBridge:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def attached(self) -> bool:
        return self._loop is not None and not self._loop.is_closed()

    def post(self, fn: Callable[..., None], *args) -> None:
        """Run `fn(*args)` on the loop soon (any thread). Dropped before `attach` and after the
        loop closed: nothing on the loop can be waiting for it then."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed between the check and the call
                loop.call_soon_threadsafe(fn, *args)


class Pulse:
    """Something changed: `fire()` wakes everyone awaiting `wait()` (loop only)."""

    def __init__(self) -> None:
        self._next: asyncio.Future | None = None
        self.fired = 0

    def fire(self) -> None:
        self.fired += 1
        fut, self._next = self._next, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def wait(self, timeout_s: float) -> None:
        """Return at the next `fire()`, or after `timeout_s`."""
        if timeout_s <= 0:
            return
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._next), timeout_s)


async def wait_until(predicate: Callable[[], object], pulse: Pulse, timeout_s: float):
    """The first truthy value of `predicate()`, re-checked whenever `pulse` fires; None once
    `timeout_s` passes without one."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        await pulse.wait(left)
