"""Where a node is reached: its identity (the advertised Raft address) and its HTTP address."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class NodeAddresses:
    node_id: str
    raft: str  # advertised Raft address: the node's identity in the cluster
    http: str  # advertised HTTP address, published to peers for forwarding
    raft_bind: str | None = None  # defaults to `raft`
    peers: list[str] = field(default_factory=list)  # the other nodes' advertised Raft addresses

    @property
    def bind(self) -> str:
        """The Raft address to listen on."""
        return self.raft_bind or self.raft

    def other_peers(self) -> list[str]:
        """`peers` without this node."""
        return [p for p in self.peers if p != self.raft]
