"""node.proposer over a fake submit: batching, the in-flight limit, slot timeouts, abandonment,
failures, and read-barrier coalescing. The test answers entries itself, as the tick thread would."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from node.bridge import LoopBridge
from node.codec import SetOp, decode
from node.errors import NoLeaderError, OutcomeUnknownError
from node.proposer import BARRIER_PASSED, Proposer, ReadBarrier
from node.state_machine import OpResult
from tests.support.wait import wait_until_async


class FakeSubmit:
    """Records each entry (payload, callback); `answer` calls the callback, from another thread if asked."""

    def __init__(self) -> None:
        self.entries: list[tuple[bytes, Callable[[object, Exception | None], None]]] = []

    def __call__(self, payload: bytes, callback) -> None:
        self.entries.append((payload, callback))

    def ops(self, i: int) -> list:
        return decode(self.entries[i][0])

    def answer(self, i: int, results=None, error: Exception | None = None, thread: bool = False) -> None:
        callback = self.entries[i][1]
        if results is None and error is None:
            results = [OpResult(True)] * len(self.ops(i))
        if thread:
            t = threading.Thread(target=callback, args=(results, error))
            t.start()
            t.join()
        else:
            callback(results, error)

    async def wait_for(self, count: int) -> None:
        await wait_until_async(f"{count} entries submitted", lambda: len(self.entries) >= count, timeout=5,
                               interval=0.002)
        assert len(self.entries) == count


@pytest.fixture
def submit():
    return FakeSubmit()


@pytest.fixture
async def bridge():
    b = LoopBridge()
    b.attach(asyncio.get_running_loop())
    return b


def put(proposer: Proposer, key: str, timeout_s: float = 5.0) -> asyncio.Task:
    return asyncio.create_task(proposer.propose(SetOp(key, b"v"), timeout_s))


async def test_writes_of_one_loop_turn_become_one_entry_with_their_own_results(submit, bridge):
    proposer = Proposer(submit, bridge)
    tasks = [put(proposer, k) for k in "abc"]
    await submit.wait_for(1)
    assert [op.key for op in submit.ops(0)] == ["a", "b", "c"]
    submit.answer(0, [OpResult(True), OpResult(False, "no"), OpResult(True)], thread=True)
    assert await asyncio.gather(*tasks) == [OpResult(True), OpResult(False, "no"), OpResult(True)]
    assert (proposer.entries_proposed, proposer.ops_proposed, proposer.in_flight) == (1, 3, 0)


async def test_at_most_two_entries_in_flight_then_the_queue_leaves_as_one(submit, bridge):
    proposer = Proposer(submit, bridge)
    first = put(proposer, "a")
    await submit.wait_for(1)
    second = put(proposer, "b")
    await submit.wait_for(2)
    queued = [put(proposer, "c"), put(proposer, "d")]
    await wait_until_async("c and d to queue", lambda: proposer.in_flight == 4, timeout=5, interval=0.002)
    queued.append(put(proposer, "e"))
    await wait_until_async("e to queue", lambda: proposer.in_flight == 5, timeout=5, interval=0.002)
    assert len(submit.entries) == 2  # the third batch waits for a slot
    submit.answer(0)
    assert await first == OpResult(True)
    await submit.wait_for(3)
    assert [op.key for op in submit.ops(2)] == ["c", "d", "e"]
    submit.answer(1)
    submit.answer(2, thread=True)
    assert await second == OpResult(True)
    assert await asyncio.gather(*queued) == [OpResult(True)] * 3
    assert proposer.in_flight == 0


async def test_an_entry_never_answered_frees_its_slot_after_the_slot_timeout(submit, bridge):
    proposer = Proposer(submit, bridge, slot_timeout_s=0.05)
    lost = [put(proposer, "a", timeout_s=30)]
    await submit.wait_for(1)
    lost.append(put(proposer, "b", timeout_s=30))
    await submit.wait_for(2)
    third = put(proposer, "c")
    await submit.wait_for(3)  # after the slot timeout, without any answer
    submit.answer(2)
    assert await third == OpResult(True)
    assert not any(t.done() for t in lost)  # their outcome is still unknown to them
    for t in lost:
        t.cancel()
    await asyncio.gather(*lost, return_exceptions=True)


async def test_abandon_in_flight_answers_outcome_unknown_and_lets_the_queue_go(submit, bridge):
    proposer = Proposer(submit, bridge)
    in_flight = [put(proposer, "a")]
    await submit.wait_for(1)
    in_flight.append(put(proposer, "b"))
    await submit.wait_for(2)
    queued = put(proposer, "c")
    await wait_until_async("c to queue", lambda: proposer.in_flight == 3, timeout=5, interval=0.002)
    t = threading.Thread(target=proposer.abandon_in_flight, args=("stopped leading",))
    t.start()
    t.join()
    for task in in_flight:
        with pytest.raises(OutcomeUnknownError, match="stopped leading"):
            await task
    await submit.wait_for(3)
    submit.answer(0)  # a late answer for an abandoned entry changes nothing
    submit.answer(2)
    assert await queued == OpResult(True)
    assert proposer.in_flight == 0


async def test_a_failed_entry_raises_its_error_in_every_caller(submit, bridge):
    proposer = Proposer(submit, bridge)
    tasks = [put(proposer, "a"), put(proposer, "b")]
    await submit.wait_for(1)
    error = NoLeaderError("lost the election")
    submit.answer(0, error=error, thread=True)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results == [error, error] and results[0] is error


async def test_a_proposal_not_answered_in_time_is_outcome_unknown(submit, bridge):
    proposer = Proposer(submit, bridge)
    with pytest.raises(OutcomeUnknownError, match="not committed within"):
        await proposer.propose(SetOp("a", b"v"), 0.05)
    assert len(submit.entries) == 1


async def test_a_write_that_timed_out_or_was_cancelled_leaves_its_entry_mates_their_results(submit, bridge):
    """A caller's timeout or cancellation ends its own wait only: the entry stays in flight, and
    the answer that comes later reaches every other caller of that entry."""
    proposer = Proposer(submit, bridge)
    timed_out, cancelled, waiting = put(proposer, "a", timeout_s=0.05), put(proposer, "b"), put(proposer, "c")
    await submit.wait_for(1)
    assert [op.key for op in submit.ops(0)] == ["a", "b", "c"]  # one entry
    with pytest.raises(OutcomeUnknownError, match="not committed within 0.05s"):
        await timed_out
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    submit.answer(0, thread=True)
    assert await waiting == OpResult(True)
    assert proposer.in_flight == 0


async def test_a_read_that_timed_out_leaves_its_round_to_the_others(submit, bridge):
    rounds: list[asyncio.Future] = []

    async def run_round(timeout_s: float) -> None:
        rounds.append(asyncio.get_running_loop().create_future())
        await rounds[-1]

    barrier = ReadBarrier(run_round, max_in_flight=1)
    patient = asyncio.create_task(barrier.wait(5))  # starts the round, bounded by its own 5 s
    impatient = asyncio.create_task(barrier.wait(0.05))  # joins that round
    await wait_until_async("one round", lambda: len(rounds) == 1, timeout=5, interval=0.002)
    with pytest.raises(OutcomeUnknownError, match="read not confirmed by a majority within 0.05s"):
        await impatient
    assert not patient.done()
    rounds[0].set_result(None)
    await patient
    assert barrier.rounds == 1


async def test_propose_without_an_attached_bridge_raises_and_submits_nothing(submit):
    proposer = Proposer(submit, LoopBridge())
    with pytest.raises(RuntimeError, match="not attached"):
        await proposer.propose(SetOp("a", b"v"), 1.0)
    assert submit.entries == [] and proposer.in_flight == 0


async def test_a_barrier_rides_with_the_writes_of_its_turn(submit, bridge):
    proposer = Proposer(submit, bridge)
    write, barrier = put(proposer, "a"), asyncio.create_task(proposer.propose(None, 5))
    await submit.wait_for(1)
    assert [op.key for op in submit.ops(0)] == ["a"]
    submit.answer(0)
    assert (await write, await barrier) == (OpResult(True), BARRIER_PASSED)
    assert (proposer.barriers_proposed, proposer.barrier_entries) == (1, 1)


async def test_barriers_arriving_during_a_round_share_exactly_one_more_round(submit, bridge):
    proposer = Proposer(submit, bridge)
    barrier = ReadBarrier(lambda timeout_s: proposer.propose(None, timeout_s), max_in_flight=1)
    first = asyncio.create_task(barrier.wait(5))
    await submit.wait_for(1)
    assert submit.ops(0) == []  # an empty entry
    later = [asyncio.create_task(barrier.wait(5)) for _ in range(5)]
    await wait_until_async("five more reads", lambda: barrier.reads == 6, timeout=5, interval=0.002)
    assert len(submit.entries) == 1
    submit.answer(0, thread=True)
    await first
    await submit.wait_for(2)
    assert not any(t.done() for t in later)  # they wait for a round that began after they arrived
    submit.answer(1)
    await asyncio.gather(*later)
    assert len(submit.entries) == 2 and proposer.barrier_entries == 2


async def loop_turns(n: int = 5) -> None:
    """Let every task that could act do so: whether a round starts, or a read is answered, is
    decided in the loop's next few turns, not after some time."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_read_during_a_round_starts_a_second_at_once_and_later_reads_wait_for_a_newer_round():
    rounds: list[asyncio.Future] = []  # one per round started; the test ends each by hand

    async def run_round(timeout_s: float) -> None:
        rounds.append(asyncio.get_running_loop().create_future())
        await rounds[-1]

    barrier = ReadBarrier(run_round)  # two rounds in flight at most
    first = asyncio.create_task(barrier.wait(5))
    await wait_until_async("the first round", lambda: len(rounds) == 1, timeout=5, interval=0.002)
    second = asyncio.create_task(barrier.wait(5))
    await wait_until_async("a second round at once", lambda: len(rounds) == 2, timeout=5, interval=0.002)
    later = [asyncio.create_task(barrier.wait(5)) for _ in range(3)]
    await wait_until_async("three more reads", lambda: barrier.reads == 5, timeout=5, interval=0.002)
    await loop_turns()
    assert len(rounds) == 2  # never a third while two fly
    rounds[1].set_result(None)
    await second
    assert not first.done()  # each read is answered by its own round, not by a later one's end
    await wait_until_async("one round for the three later reads", lambda: len(rounds) == 3, timeout=5,
                           interval=0.002)
    rounds[0].set_result(None)
    await first
    await loop_turns()
    assert not any(t.done() for t in later)  # their round began after they arrived, and has not ended
    rounds[2].set_result(None)
    await asyncio.gather(*later)
    assert (barrier.rounds, len(rounds)) == (3, 3)


async def test_a_failed_barrier_round_fails_its_readers(submit, bridge):
    proposer = Proposer(submit, bridge)
    barrier = ReadBarrier(lambda timeout_s: proposer.propose(None, timeout_s))
    readers = [asyncio.create_task(barrier.wait(5)) for _ in range(3)]
    await submit.wait_for(1)
    submit.answer(0, error=NoLeaderError("deposed"))
    results = await asyncio.gather(*readers, return_exceptions=True)
    assert all(isinstance(r, NoLeaderError) for r in results)
