"""What sessions need a clock for, kept in memory as Consul keeps it: the leader's TTL timers and
every node's lock-delay table. Nothing here is replicated or in a snapshot.

TTL timers (leader only): each session with a TTL has a timer on the leader's event loop, armed
at the full TTL when the session is created, when it is renewed, and, for every session, when
this node becomes the leader or installs a snapshot. When one runs out the leader proposes an
"invalidate" entry, which every node applies alike (node/state_machine.py). So a session is
invalidated at its TTL after the later of the last renewal the current leader answered and the
moment the current leader took office, plus one commit while a majority is reachable (Consul
allows up to twice the TTL). A leader change never expires a live session early: the new
leader starts every timer afresh (which can extend an abandoned session to about twice the TTL
plus the election).

Lock-delay (every node): when a session ends, the node that applies the entry notes that each
key it held may not be acquired for the session's LockDelay, counted from that moment on this
node's monotonic clock. The node that receives an acquire checks the table before proposing
(after a read barrier, so it has applied every invalidation committed before the request).
Lost on restart, as Consul's.

Threads: `on_session_event` and `on_role_changed` are called on the tick thread and post to the
loop; everything else runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from node.bridge import LoopBridge
from node.codec import Op, SessionOp
from node.sessions import Session
from node.state_machine import OpResult

log = logging.getLogger(__name__)

RETRY_INVALIDATE_S = 1.0  # an invalidation that failed to commit is proposed again after this
MAX_LOCK_DELAYS = 100_000  # keys under lock-delay kept at once; expired ones are pruned beyond it


class SessionKeeper:
    def __init__(self, bridge: LoopBridge, is_leader: Callable[[], bool],
                 ttls: Callable[[], dict[str, int]],
                 propose: Callable[[Op, float], Awaitable[OpResult]]) -> None:
        """`ttls()`: session ID -> TTL in ns of every session with a TTL, as applied here (read
        under the apply lock); `propose(op, timeout_s)`: the node's write path."""
        self._bridge = bridge
        self._is_leader = is_leader
        self._ttls = ttls
        self._propose = propose
        self._leading = False
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._lock_delays: dict[str, float] = {}  # key -> loop time its lock-delay ends
        self._tasks: set[asyncio.Task] = set()
        self.invalidations = 0  # proposed by this node as leader

    # -- tick thread ------------------------------------------------------------------------------
    def on_session_event(self, kind: str, session: Session | None, keys: tuple[str, ...]) -> None:
        self._bridge.post(self._on_event, kind, session, keys)

    def on_role_changed(self) -> None:
        self._bridge.post(self.sync_role)

    # -- event loop -------------------------------------------------------------------------------
    def sync_role(self) -> None:
        """Arm every timer when this node has just become the leader; drop them when it stopped."""
        leading = self._is_leader()
        if leading and not self._leading:
            self._leading = True
            self._arm_all()
            log.info("leading: %d session timers started at their full TTL", len(self._timers))
        elif not leading and self._leading:
            self._leading = False
            self._cancel_all()
            log.info("no longer leading: session timers dropped")

    def _on_event(self, kind: str, session: Session | None, keys: tuple[str, ...]) -> None:
        if kind == "reset":  # a snapshot replaced every session
            if self._leading:
                self._arm_all()
            return
        assert session is not None
        if kind == "created":
            if self._leading and session.ttl_ns:
                self._arm(session.id, session.ttl_ns / 1e9)
            return
        self._cancel(session.id)  # ended
        if session.lock_delay_ns and keys:
            until = asyncio.get_running_loop().time() + session.lock_delay_ns / 1e9
            for key in keys:
                self._lock_delays[key] = until
            self._prune_lock_delays()

    def renew(self, session_id: str, ttl_ns: int) -> None:
        """The leader answered a renewal: the session's timer starts again at its full TTL."""
        if self._leading and ttl_ns:
            self._arm(session_id, ttl_ns / 1e9)

    def lock_delay_left_s(self, key: str) -> float:
        """How long `key` may not be acquired yet (0: it may)."""
        until = self._lock_delays.get(key)
        if until is None:
            return 0.0
        left = until - asyncio.get_running_loop().time()
        if left <= 0:
            del self._lock_delays[key]
            return 0.0
        return left

    def timer_count(self) -> int:
        return len(self._timers)

    def _arm_all(self) -> None:
        self._cancel_all()
        for session_id, ttl_ns in self._ttls().items():
            if ttl_ns:
                self._arm(session_id, ttl_ns / 1e9)

    def _arm(self, session_id: str, ttl_s: float) -> None:
        self._cancel(session_id)
        self._timers[session_id] = asyncio.get_running_loop().call_later(ttl_s, self._expire, session_id)

    def _cancel(self, session_id: str) -> None:
        timer = self._timers.pop(session_id, None)
        if timer is not None:
            timer.cancel()

    def _cancel_all(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _expire(self, session_id: str) -> None:
        self._timers.pop(session_id, None)
        task = asyncio.get_running_loop().create_task(self._invalidate(session_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _invalidate(self, session_id: str) -> None:
        if not self._leading:
            return
        log.info("session %s expired: invalidating it", session_id)
        try:
            result = await self._propose(SessionOp("invalidate", {"id": session_id}), 5.0)
            if result.ok:
                self.invalidations += 1
                return
        except Exception as exc:  # no leader, stepped down, timed out: try again while we lead
            log.warning("invalidating session %s failed (%s); retrying", session_id, exc)
        if self._leading and session_id in self._ttls() and session_id not in self._timers:
            self._timers[session_id] = asyncio.get_running_loop().call_later(
                RETRY_INVALIDATE_S, self._expire, session_id)

    def _prune_lock_delays(self) -> None:
        if len(self._lock_delays) <= MAX_LOCK_DELAYS:
            return
        now = asyncio.get_running_loop().time()
        for key in [k for k, until in self._lock_delays.items() if until <= now]:
            del self._lock_delays[key]
        excess = len(self._lock_delays) - MAX_LOCK_DELAYS
        if excess > 0:  # still too many: the soonest to end go first
            for key in sorted(self._lock_delays, key=self._lock_delays.__getitem__)[:excess]:
                del self._lock_delays[key]
