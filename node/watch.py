"""Wake-ups for blocking queries: who waits on which key or prefix.

The state machine reports the keys each applied entry changed, on PySyncObj's tick thread;
`WatchHub.on_apply` posts them to the event loop (node.bridge), where only the
waiters of those keys, and of prefixes of them, are woken. An idle waiter is a future and a
timer: ten thousand of them cost no CPU while nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib

from node.bridge import LoopBridge


class WatchHub:
    def __init__(self, bridge: LoopBridge) -> None:
        self._bridge = bridge
        self._by_key: dict[str, set[asyncio.Future]] = {}
        self._by_prefix: dict[str, set[asyncio.Future]] = {}
        self._prefix_lengths: dict[int, int] = {}  # length -> how many watched prefixes have it
        self.wakeups = 0

    @property
    def waiting(self) -> int:
        return sum(map(len, self._by_key.values())) + sum(map(len, self._by_prefix.values()))

    # tick thread
    def on_apply(self, keys: list[str] | None, index: int) -> None:
        if self._by_key or self._by_prefix:
            self._bridge.post(self._notify, keys)

    # event loop
    def _notify(self, keys: list[str] | None) -> None:
        if keys is None:  # a snapshot replaced the state: everyone re-checks
            woken = [f for s in (*self._by_key.values(), *self._by_prefix.values()) for f in s]
            self._by_key.clear()
            self._by_prefix.clear()
            self._prefix_lengths.clear()
        else:
            woken = []
            for key in keys:
                woken.extend(self._by_key.pop(key, ()))
                for length in list(self._prefix_lengths):
                    if length <= len(key):
                        waiters = self._by_prefix.pop(key[:length], None)
                        if waiters:
                            self._forget_prefix_length(length)
                            woken.extend(waiters)
        for fut in woken:
            if not fut.done():
                fut.set_result(None)
                self.wakeups += 1

    async def wait(self, key: str, prefix: bool, timeout_s: float) -> None:
        """Return when `key` (or any key under `prefix`) changes, or after `timeout_s`."""
        if timeout_s <= 0:
            return
        fut = asyncio.get_running_loop().create_future()
        table = self._by_prefix if prefix else self._by_key
        waiters = table.setdefault(key, set())
        if prefix and not waiters:
            self._prefix_lengths[len(key)] = self._prefix_lengths.get(len(key), 0) + 1
        waiters.add(fut)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, timeout_s)
        finally:
            current = table.get(key)
            if current is not None and fut in current:
                current.discard(fut)
                if not current:
                    del table[key]
                    if prefix:
                        self._forget_prefix_length(len(key))

    def _forget_prefix_length(self, length: int) -> None:
        left = self._prefix_lengths.get(length, 0) - 1
        if left > 0:
            self._prefix_lengths[length] = left
        else:
            self._prefix_lengths.pop(length, None)
