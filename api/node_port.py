"""What the HTTP API needs from a node: declared here, on the API's side, and implemented by
`node.raft.RaftNode` (and by the fake node of tests/api, which is how the API is tested
without a cluster).

Request handlers use nothing else of the node. Starting, joining and stopping a node
(api/serve.py, api/join.py) are its composition and use the concrete class.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from node.codec import ConfigOp, Op
from node.metrics import NodeMetrics
from node.reads import Consistency, ReadRoute, ReadView
from node.state_machine import OpResult

__all__ = ["Consistency", "Node", "ReadRoute", "ReadView"]


class Node(Protocol):
    @property
    def node_id(self) -> str:
        """This node's name."""

    @property
    def raft_address(self) -> str:
        """Its advertised Raft address: its identity in the cluster."""

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called once from the event loop before serving: where the node delivers its events."""

    # -- who leads ----------------------------------------------------------------------------
    @property
    def leader(self) -> str | None:
        """The leader's Raft address, None while none is known."""

    @property
    def is_leader(self) -> bool: ...

    def leader_http(self) -> str | None:
        """The leader's advertised HTTP address, once it has published it."""

    async def wait_for_leader(self, timeout_s: float) -> str:
        """The leader's Raft address; NoLeaderError after `timeout_s` without one."""

    async def wait_for_cluster_change(self, timeout_s: float) -> None:
        """Return when the leader, its HTTP address, this node's role or the configuration
        changes, or after `timeout_s`."""

    def timeline_since(self, seq: int) -> list[dict]:
        """The console's timeline (node.timeline): events after `seq` still remembered, oldest first."""

    async def wait_for_timeline(self, timeout_s: float) -> None:
        """Return when the timeline records an event, or after `timeout_s`."""

    @property
    def last_contact_ms(self) -> int | None:
        """Milliseconds since the leader was last heard (0 on the leader; None: never)."""

    @property
    def uptime_ms(self) -> int: ...

    # -- writes and reads ---------------------------------------------------------------------
    async def propose(self, op: Op, timeout_s: float, size_bytes: int = 0) -> OpResult:
        """Replicate `op` through the log; its result once committed and applied here."""

    async def prepare_read(self, consistency: Consistency, max_stale_s: float | None, timeout_s: float) -> ReadRoute:
        """Make this node fit to answer a read in `consistency` (a read barrier where needed),
        or say that the leader must answer it (ReadRoute.LEADER)."""

    def read_view(self) -> ReadView:
        """This node's store as of one applied index, safe to read from the event loop."""

    async def wait_for_change(self, key: str, prefix: bool, timeout_s: float) -> None:
        """Return when `key` (or a key under the prefix) changes, or after `timeout_s`."""

    # -- sessions -----------------------------------------------------------------------------
    def session_renewed(self, session_id: str, ttl_ns: int) -> None:
        """On the leader, after a renewal was checked: the session's TTL timer starts again."""

    def lock_delay_left_s(self, key: str) -> float:
        """Seconds until `key` may be acquired after its session ended (lock-delay); 0: now."""

    # -- cluster ------------------------------------------------------------------------------
    def status(self) -> dict: ...

    def peers(self) -> list[str]:
        """The voters' Raft addresses (Consul's /v1/status/peers)."""

    def members(self) -> dict[str, tuple[str, str]]:
        """Raft address -> (node id, HTTP address) of every member that published one."""

    def configuration(self) -> dict:
        """{"cluster_id", "index", "voters", "learners", "members"} as last applied here."""

    def unreachable_peers(self) -> list[str]: ...

    def hellos(self) -> dict:
        """Peer Raft address -> the last hello it sent (node.membership.PeerHello: applied, term, at)."""

    async def change_config(self, op: ConfigOp, timeout_s: float) -> OpResult:
        """One membership change through the log; MembershipBusyError while another is in flight."""

    def transfer_leadership(self, target: str | None, done: Callable[[bool], None]) -> None: ...

    def metrics(self) -> NodeMetrics:
        """What the metrics export, read now (api/metrics.py; cheap: called on every scrape)."""

    # -- snapshots ----------------------------------------------------------------------------
    def snapshot_files(self) -> list[str]:
        """Paths of the snapshots in this node's folder, newest first."""

    async def snapshot_file(self, timeout_s: float) -> str:
        """The path of a snapshot holding at least every write applied here before the call."""
