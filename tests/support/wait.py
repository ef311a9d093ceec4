"""Waiting in tests: poll a condition until it holds, instead of sleeping a guessed time.

    value = wait_until("n4 to become a voter", lambda: voter(leader, n4.raft), timeout=60)

`predicate` is called until it returns a truthy value, which is returned; with `until`, until
the value it returns passes `until(value)` (then a timeout names that value, e.g. a status
dict, rather than a bare False). An exception from either counts as "not yet" and is
remembered, except an AssertionError: that fails the wait at once (a predicate asserts what
would make further waiting pointless, e.g. a process that died). On timeout the AssertionError
names what was awaited, how often it was checked, and the last value or exception seen;
`explain` (e.g. `cluster.logs`) adds more text to it.

`Cluster.wait_for` (loadtest/cluster.py) is the harness's own wait; test code uses this one.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

_MAX_REPR = 800


class _Poll:
    """The bookkeeping shared by the sync and async waits."""

    def __init__(self, what: str, timeout: float, explain: Callable[[], str] | None) -> None:
        self.what, self.timeout, self.explain = what, timeout, explain
        self.deadline = time.monotonic() + timeout
        self.checks = 0
        self.last = "no check finished"

    def outcome(self, value: Any = None, holds: bool = False, exc: Exception | None = None) -> bool:
        """Record one check; True when the wait is over (the value holds)."""
        self.checks += 1
        if exc is not None:
            self.last = f"last exception: {type(exc).__name__}: {exc}"
            return False
        if holds:
            return True
        self.last = f"last value: {value!r}"
        return False

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def failure(self) -> AssertionError:
        last = self.last if len(self.last) <= _MAX_REPR else self.last[:_MAX_REPR] + "..."
        message = f"timed out after {self.timeout:g}s waiting for {self.what} ({self.checks} checks; {last})"
        if self.explain is not None:
            try:
                message += "\n" + str(self.explain())
            except Exception as exc:  # the explanation must not hide the timeout
                message += f"\n(explain failed: {type(exc).__name__}: {exc})"
        return AssertionError(message)


def wait_until(what: str, predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05,
               explain: Callable[[], str] | None = None, until: Callable[[Any], Any] = bool) -> Any:
    """Call `predicate` every `interval` seconds until its value passes `until`; return that value."""
    poll = _Poll(what, timeout, explain)
    while True:
        try:
            value = predicate()
            holds = bool(until(value))
        except AssertionError:
            raise
        except Exception as exc:
            done = poll.outcome(exc=exc)
        else:
            done = poll.outcome(value, holds)
        if done:
            return value
        if poll.remaining() <= 0:
            raise poll.failure()
        time.sleep(max(0.0, min(interval, poll.remaining())))  # the poll interval: the condition is re-checked


async def wait_until_async(what: str, predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05,
                           explain: Callable[[], str] | None = None, until: Callable[[Any], Any] = bool) -> Any:
    """`wait_until` inside an event loop: the loop runs between checks; `predicate` may be a coroutine function."""
    poll = _Poll(what, timeout, explain)
    while True:
        try:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            holds = bool(until(value))
        except AssertionError:
            raise
        except Exception as exc:
            done = poll.outcome(exc=exc)
        else:
            done = poll.outcome(value, holds)
        if done:
            return value
        if poll.remaining() <= 0:
            raise poll.failure()
        await asyncio.sleep(max(0.0, min(interval, poll.remaining())))  # the poll interval: re-checked after
