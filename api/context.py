"""What the HTTP handlers share: the node, the forwarder and the limits, kept on the app."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from aiohttp import web

from api.acl.authz import AclEnforcer
from api.forward import LeaderForwarder
from api.head_watch import HeadWatches
from api.limits import BlockingSlots, ClientConnections
from api.node_port import Node
from api.request_metrics import RequestMetrics

DEFAULT_MAX_VALUE_BYTES = 512 * 1024


@dataclass(frozen=True)
class ApiConfig:
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    max_txn_bytes: int = 1024 * 1024  # a transaction's JSON body (values are base64 in it)
    max_restore_bytes: int = 64 * 1024 * 1024  # PUT /v1/snapshot travels through the log as one entry
    request_timeout_s: float = 5.0
    peer_ssl: ssl.SSLContext | None = None  # HTTPS towards other nodes when TLS is on (api/tls.py)
    acl_default_policy: str | None = None  # "allow" or "deny": ACLs on (api/acl/); None: off
    # Limits on what one client may hold (api/limits.py; README "Limits"):
    max_conns_per_client: int = 200  # Consul's limits.http_max_conns_per_client
    max_blocking_per_client: int = 64  # blocking queries (?index=) held at once per client address
    head_timeout_s: float = 10.0  # a request head must arrive within this of its first byte (or of the connect)
    body_timeout_s: float = 60.0  # and its body within this of the head
    max_url_bytes: int = 4096  # request target; 414 beyond (a 512-byte key percent-encoded is 1,536)


@dataclass
class ApiContext:
    node: Node
    config: ApiConfig
    forwarder: LeaderForwarder
    acl: AclEnforcer  # who a request is and what it may do (allows everything while ACLs are off)
    connections: ClientConnections = field(default_factory=lambda: ClientConnections(ApiConfig.max_conns_per_client))
    blocking: BlockingSlots = field(default_factory=lambda: BlockingSlots(ApiConfig.max_blocking_per_client))
    head_watches: HeadWatches = field(default_factory=HeadWatches)  # connections handed to aiohttp
    requests: RequestMetrics = field(default_factory=RequestMetrics)  # counted by both fronts (api/metrics.py)


CTX = web.AppKey("raftkv", ApiContext)
