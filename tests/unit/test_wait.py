"""The tests' own wait helper (tests/support/wait.py)."""

import asyncio
import itertools

import pytest

from tests.support.wait import wait_until, wait_until_async


def test_returns_the_first_truthy_value_and_retries_exceptions():
    calls = itertools.count()

    def predicate():
        n = next(calls)
        if n < 2:
            raise ConnectionError("not up yet")
        return n >= 4 and {"ready": n}

    assert wait_until("the counter", predicate, timeout=5, interval=0.001) == {"ready": 4}
    assert next(calls) == 5


def test_a_timeout_names_what_was_awaited_the_last_value_and_the_explanation():
    with pytest.raises(AssertionError) as failed:
        wait_until("the moon", lambda: [], timeout=0.05, interval=0.01, explain=lambda: "node logs here")
    message = str(failed.value)
    assert message.startswith("timed out after 0.05s waiting for the moon (")
    assert "last value: []" in message and message.endswith("\nnode logs here")


def test_until_decides_on_the_value_and_a_timeout_names_the_value_seen():
    status = {"watchers": 3}
    assert wait_until("three watchers", lambda: status, until=lambda s: s["watchers"] >= 3) is status
    with pytest.raises(AssertionError, match=r"waiting for ten watchers .*last value: \{'watchers': 3\}"):
        wait_until("ten watchers", lambda: status, timeout=0.05, interval=0.01, until=lambda s: s["watchers"] >= 10)
    with pytest.raises(AssertionError, match=r"last exception: TypeError"):
        wait_until("a status", lambda: None, timeout=0.05, interval=0.01, until=lambda s: s["watchers"] >= 10)


def test_a_timeout_names_the_last_exception():
    def predicate():
        raise KeyError("leader")

    with pytest.raises(AssertionError, match=r"waiting for a leader .*last exception: KeyError: 'leader'"):
        wait_until("a leader", predicate, timeout=0.05, interval=0.01)


def test_an_assertion_in_the_predicate_fails_at_once():
    calls = itertools.count()

    def predicate():
        next(calls)
        raise AssertionError("the process died")

    with pytest.raises(AssertionError, match="^the process died$"):
        wait_until("anything", predicate, timeout=30)
    assert next(calls) == 1


def test_the_predicate_is_checked_at_least_once_even_with_no_time():
    assert wait_until("an immediate value", lambda: 7, timeout=0) == 7


async def test_the_async_wait_runs_the_loop_between_checks_and_awaits_coroutines():
    state = {"n": 0}

    async def bump():
        for _ in range(3):
            state["n"] += 1
            await asyncio.sleep(0)

    async def predicate():
        return state["n"] == 3 and "done"

    task = asyncio.create_task(bump())
    assert await wait_until_async("the task", predicate, timeout=5, interval=0.001) == "done"
    await task
    with pytest.raises(AssertionError, match="waiting for never .*last value: False"):
        await wait_until_async("never", lambda: False, timeout=0.02, interval=0.005)

