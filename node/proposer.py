"""Group proposals: every write that arrives in one event-loop turn becomes one log entry.

This is where throughput comes from with PySyncObj's batching turned off (node.engine.conf):
one log entry, one journal sync, one AppendEntries per follower and one callback hop for a
whole batch. All ops of a batch commit together and share the entry's index.

Runs on the event loop; `submit(payload, callback)` hands the entry to the engine
(node.engine.RaftEngine.submit), whose callback `(results, error)` arrives on the tick thread
(or inline on a full queue) and is posted back to the loop through the node's bridge
(node.bridge). `error` is None or a node.errors exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from node.bridge import LoopBridge, Pulse
from node.codec import Op, encode
from node.errors import OutcomeUnknownError
from node.metrics import BATCH_BUCKETS, Histogram
from node.state_machine import OpResult

MAX_BATCH_OPS = 512
MAX_BATCH_BYTES = 4 * 1024 * 1024

BARRIER_PASSED = OpResult(True)

Submit = Callable[[bytes, Callable[[object, Exception | None], None]], None]


class Proposer:
    """Batches writes into log entries, with at most `max_in_flight` entries uncommitted.

    While the limit is reached, new writes wait and then leave together in one entry when a
    slot frees: under load every entry carries many writes (one journal sync, one message
    per follower, one callback for all of them), while an idle node still proposes at once.
    """

    def __init__(self, submit: Submit, bridge: LoopBridge, max_in_flight: int = 2,
                 slot_timeout_s: float = 10.0) -> None:
        self._submit = submit
        self._bridge = bridge
        self.drained = Pulse()  # fires on the loop whenever the last entry in flight is answered
        self._pending: list[tuple[Op | None, int, asyncio.Future]] = []
        self._pending_bytes = 0
        self._flush_scheduled = False
        self._max_in_flight = max_in_flight
        # entry number -> its futures, for entries proposed and not yet answered
        self._in_flight: dict[int, tuple[list[asyncio.Future], list[asyncio.Future]]] = {}
        self._slot_timeout_s = slot_timeout_s  # an entry never answered (lost forward) frees its slot
        self.entries_proposed = 0
        self.ops_proposed = 0
        self.barriers_proposed = 0  # read barriers requested
        self.barrier_entries = 0  # log entries that carried at least one: the barrier rounds
        self.writes_per_entry = Histogram(BATCH_BUCKETS)  # entries that carry writes

    async def propose(self, op: Op | None, timeout_s: float, size_bytes: int = 0) -> OpResult:
        """Commit `op` through the log and return its result.

        `op=None` is a read barrier: it rides in the next entry (an empty one if no write
        is pending) and returns once that entry is committed and applied here, i.e. after
        every write committed before the call. Concurrent barriers share one entry.
        """
        if not self._bridge.attached:  # its answer could never reach this loop
            raise RuntimeError("the node was not attached to the event loop (RaftNode.attach)")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((op, size_bytes, fut))
        self._pending_bytes += size_bytes
        if len(self._pending) >= MAX_BATCH_OPS or self._pending_bytes >= MAX_BATCH_BYTES:
            self._flush(force=True)
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await settled(fut, timeout_s, NOT_COMMITTED)

    def _flush(self, force: bool = False) -> None:
        self._flush_scheduled = False
        if not self._pending or (len(self._in_flight) >= self._max_in_flight and not force):
            return  # _release flushes when a slot frees
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        ops = [op for op, _, _ in batch if op is not None]
        write_futures = [fut for op, _, fut in batch if op is not None]
        barrier_futures = [fut for op, _, fut in batch if op is None]
        loop, bridge = asyncio.get_running_loop(), self._bridge
        entry = self.entries_proposed
        self._in_flight[entry] = (write_futures, barrier_futures)
        timer = loop.call_later(self._slot_timeout_s, self._release, entry)

        def answered(results, error) -> None:  # on the loop
            timer.cancel()
            self._release(entry)
            _resolve(write_futures, barrier_futures, results, error)

        def on_result(results, error):  # tick thread, or inline when the queue is full
            bridge.post(answered, results, error)

        self.entries_proposed += 1
        self.ops_proposed += len(ops)
        self.barriers_proposed += len(barrier_futures)
        self.barrier_entries += 1 if barrier_futures else 0
        if ops:
            self.writes_per_entry.observe(len(ops))
        self._submit(encode(ops), on_result)

    @property
    def in_flight(self) -> int:
        """Entries proposed and not yet answered, plus writes waiting for a slot."""
        return len(self._in_flight) + len(self._pending)

    def abandon_in_flight(self, reason: str) -> None:
        """Answer every entry in flight with "outcome unknown" now (the node stopped leading:
        they may still commit under the next leader, or never). Without this a deposed leader,
        cut off from the others, held its clients until their own timeouts; PySyncObj answers
        them only once a new leader overwrites or commits the entries. Thread-safe."""
        self._bridge.post(self._abandon, reason)

    def _abandon(self, reason: str) -> None:
        for entry, (write_futures, barrier_futures) in list(self._in_flight.items()):
            self._release(entry)
            _fail(write_futures + barrier_futures, OutcomeUnknownError(reason))

    def _release(self, entry: int) -> None:
        if entry in self._in_flight:
            del self._in_flight[entry]
            if not self._in_flight and not self._pending:
                self.drained.fire()
            if self._pending and not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)


def _resolve(
    write_futures: list[asyncio.Future], barrier_futures: list[asyncio.Future], results, error: Exception | None
) -> None:
    if error is None:
        for fut, result in zip(write_futures, results, strict=True):
            if not fut.done():
                fut.set_result(result)
        for fut in barrier_futures:
            if not fut.done():
                fut.set_result(BARRIER_PASSED)
        return
    _fail(write_futures + barrier_futures, error)


NOT_COMMITTED = "not committed within {:g}s (no quorum?)"
NOT_CONFIRMED = "read not confirmed by a majority within {:g}s (no quorum?)"


async def settled(fut: asyncio.Future, timeout_s: float, failure: str):
    """`await fut`, bounded: after `timeout_s` the future itself fails with OutcomeUnknownError
    (`failure` formatted with the timeout), and whoever settles it later finds it done. A
    cancelled waiter cancels it the same way. One timer per request, where
    wait_for(shield(fut)) built two more futures and four callbacks: a measurable share of a
    linearizable read's event-loop CPU (BENCHMARKS.md, "Where the time goes")."""
    # fut's own loop: asyncio.get_running_loop() makes a getpid() system call on Python 3.11
    timer = fut.get_loop().call_later(timeout_s, _expire, fut, failure, timeout_s)
    try:
        return await fut
    finally:
        timer.cancel()


def _expire(fut: asyncio.Future, failure: str, timeout_s: float) -> None:
    if not fut.done():
        fut.set_exception(OutcomeUnknownError(failure.format(timeout_s)))


def _fail(futures: list[asyncio.Future], exc: Exception) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: a timed-out waiter no longer looks at it


class ReadBarrier:
    """Coalesces linearizable reads: at most `max_in_flight` (2) confirmation rounds in flight
    per node.

    A read that arrives while fewer rounds fly starts one at once; otherwise it waits for the
    next round, which starts when one in flight ends and serves every read that queued
    meanwhile. So the number of rounds is bounded by the round trip, not by the number of reads:
    under load one round serves several reads. Each read still waits for a round that began
    after it arrived, which is what makes it linearizable. Two rounds rather than one: a read
    that arrived just after a round began waited for that round's end and then for a whole
    round of its own; with two it starts its own (BENCHMARKS.md, "Two read rounds in flight").
    `run_round(timeout_s)` is one round: it returns once every write committed before it began
    is applied on this node (node.raft: a ReadIndex round, node.engine.read_index), or raises.
    A leader's engine runs its rounds one after another (node.engine.read_index): there the
    second starts the moment the first is confirmed, without a trip through the loop; a
    follower's asks fly side by side.
    """

    def __init__(self, run_round: Callable[[float], Awaitable[object]], max_in_flight: int = 2) -> None:
        self._run_round = run_round
        self._max_in_flight = max_in_flight
        self._waiting: list[asyncio.Future] = []
        self._runners: set[asyncio.Task] = set()
        self.reads = 0
        self.rounds = 0
        self.reads_per_round = Histogram(BATCH_BUCKETS)

    async def wait(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._waiting.append(fut)
        self.reads += 1
        if len(self._runners) < self._max_in_flight:
            runner = loop.create_task(self._run(timeout_s))
            self._runners.add(runner)
            runner.add_done_callback(self._runners.discard)
        await settled(fut, timeout_s, NOT_CONFIRMED)

    async def _run(self, timeout_s: float) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            self.rounds += 1
            self.reads_per_round.observe(len(batch))
            try:
                async with asyncio.timeout(timeout_s):  # wait_for would start a task per round
                    await self._run_round(timeout_s)
            except Exception as exc:  # every reader of this round gets the round's failure
                if isinstance(exc, TimeoutError):
                    exc = OutcomeUnknownError(NOT_CONFIRMED.format(timeout_s))
                for fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                        fut.exception()
                continue
            for fut in batch:
                if not fut.done():
                    fut.set_result(None)
