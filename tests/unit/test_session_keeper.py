"""The leader's TTL timers and the lock-delay table (node/session_keeper.py), on a real event
loop with a real state machine behind a recording propose."""

import asyncio

from node.bridge import LoopBridge
from node.codec import LockOp, SessionOp, encode
from node.session_keeper import SessionKeeper
from node.state_machine import KVStateMachine, OpResult
from tests.support.wait import wait_until_async

TTL_NS = 200_000_000  # 0.2 s: the keeper takes any TTL; the API enforces Consul's minimum


class Harness:
    def __init__(self, leading: bool = True) -> None:
        self.sm = KVStateMachine()
        self.index = 1
        self.leading = leading
        self.proposed: list = []
        self.bridge = LoopBridge()
        self.keeper = SessionKeeper(self.bridge, lambda: self.leading, self.ttls, self.propose)
        self.sm.session_listener = self.keeper.on_session_event

    def ttls(self) -> dict[str, int]:
        return {sid: s.ttl_ns for sid, s in self.sm.sessions.sessions.items() if s.ttl_ns}

    async def propose(self, op, timeout_s: float) -> OpResult:
        self.proposed.append(op)
        self.index += 1
        return self.sm.apply(self.index, encode([op]))[0]

    async def start(self) -> None:
        self.bridge.attach(asyncio.get_running_loop())
        self.keeper.sync_role()

    def create(self, sid: str, ttl_ns: int = TTL_NS, delay_ns: int = 0) -> None:
        self.index += 1
        self.sm.apply(self.index, encode([SessionOp("create", {"id": sid, "node": "n1", "ttl": "x", "ttl_ns": ttl_ns,
                                                               "lock_delay_ns": delay_ns})]))

    def invalidations(self) -> list[str]:
        return [op.args["id"] for op in self.proposed if isinstance(op, SessionOp)]


async def test_session_keeper_leader_invalidates_an_unrenewed_session_after_its_ttl():
    h = Harness()
    await h.start()
    h.create("s1")
    h.create("s2", ttl_ns=0)  # no TTL: never expires
    await wait_until_async("s1 to be invalidated", lambda: h.invalidations() == ["s1"], 5)
    assert h.sm.sessions.get("s1") is None and h.sm.sessions.get("s2") is not None
    await asyncio.sleep(0.3)
    assert h.invalidations() == ["s1"] and h.keeper.timer_count() == 0


async def test_session_keeper_renewal_restarts_the_timer():
    h = Harness()
    await h.start()
    ttl_ns = 5 * TTL_NS  # 1 s, renewed every 0.1 s for 2.5 s: more than twice its TTL, never invalidated
    h.create("s1", ttl_ns)
    for _ in range(25):
        await asyncio.sleep(0.1)
        h.keeper.renew("s1", ttl_ns)
    assert h.invalidations() == [] and h.sm.sessions.get("s1") is not None
    await wait_until_async("s1 to be invalidated", lambda: h.invalidations() == ["s1"], 5)


async def test_session_keeper_follower_keeps_no_timers_and_a_new_leader_starts_all_at_full_ttl():
    h = Harness(leading=False)
    await h.start()
    h.create("s1")
    await asyncio.sleep(0.3)
    assert h.invalidations() == [] and h.keeper.timer_count() == 0
    h.leading = True
    h.keeper.on_role_changed()
    await wait_until_async("the new leader to arm s1", lambda: h.keeper.timer_count() == 1, 5)
    await wait_until_async("s1 to be invalidated", lambda: h.invalidations() == ["s1"], 5)
    h.create("s2")
    h.leading = False
    h.keeper.on_role_changed()  # stepped down: its timers go
    await wait_until_async("the timers to be dropped", lambda: h.keeper.timer_count() == 0, 5)
    await asyncio.sleep(0.3)
    assert h.invalidations() == ["s1"]


async def test_session_keeper_notes_lock_delay_for_the_keys_an_ended_session_held():
    h = Harness(leading=False)
    await h.start()
    h.create("s1", ttl_ns=0, delay_ns=300_000_000)
    h.index += 1
    h.sm.apply(h.index, encode([LockOp("k", b"", 0, "s1", True)]))
    h.index += 1
    h.sm.apply(h.index, encode([SessionOp("destroy", {"id": "s1"})]))
    await wait_until_async("the lock-delay to be noted", lambda: h.keeper.lock_delay_left_s("k") > 0, 5)
    assert h.keeper.lock_delay_left_s("k") <= 0.3 and h.keeper.lock_delay_left_s("other") == 0
    await wait_until_async("the lock-delay to pass", lambda: h.keeper.lock_delay_left_s("k") == 0, 5)
