"""What the HTTP handlers share: the node, the forwarder and the limits, kept on the app."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from aiohttp import web

from api.acl.authz import AclEnforcer
from api.forward import LeaderForwarder
from api.node_port import Node

DEFAULT_MAX_VALUE_BYTES = 512 * 1024


@dataclass(frozen=True)
class ApiConfig:
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    max_txn_bytes: int = 1024 * 1024  # a transaction's JSON body (values are base64 in it)
    max_restore_bytes: int = 64 * 1024 * 1024  # PUT /v1/snapshot travels through the log as one entry
    request_timeout_s: float = 5.0
    peer_ssl: ssl.SSLContext | None = None  # HTTPS towards other nodes when TLS is on (api/tls.py)
    acl_default_policy: str | None = None  # "allow" or "deny": ACLs on (api/acl/); None: off


@dataclass
class ApiContext:
    node: Node
    config: ApiConfig
    forwarder: LeaderForwarder
    acl: AclEnforcer  # who a request is and what it may do (allows everything while ACLs are off)


CTX = web.AppKey("raftkv", ApiContext)
