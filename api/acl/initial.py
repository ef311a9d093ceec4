"""Turning ACLs on for a node (`raftkv serve --acl`), and Consul's initial management token.

`--acl allow|deny` (or RAFTKV_ACL) turns enforcement on with that default policy; off by
default. `--acl-initial-management-token-file FILE` (or RAFTKV_ACL_INITIAL_MANAGEMENT, the
token itself) is Consul's acl.tokens.initial_management: a management token with that secret
is created through the log once, by the leader, if no token has that secret yet. Creating it
counts as the bootstrap when none happened yet (a later PUT /v1/acl/bootstrap is refused).
The secret itself is never logged; its AccessorID is.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import uuid
from datetime import UTC, datetime

from node.acl import GLOBAL_MANAGEMENT_ID, secret_hash
from node.codec import AclOp
from node.errors import RaftkvError

log = logging.getLogger(__name__)
RECHECK_S = 5.0


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--acl", choices=["allow", "deny"],
                   help="enforce ACL tokens, Consul style, with this default policy (env RAFTKV_ACL; default: off)")
    p.add_argument("--acl-initial-management-token-file", metavar="FILE",
                   help="create a management token with the secret in FILE once, if absent "
                        "(env RAFTKV_ACL_INITIAL_MANAGEMENT holds the secret itself)")


def settings(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(default policy or None when off, initial management secret or None); ValueError with
    one line for the user when they do not make sense."""
    policy = args.acl
    if policy not in (None, "allow", "deny"):
        raise ValueError(f"--acl must be allow or deny, not {policy!r}")
    secret = os.environ.get("RAFTKV_ACL_INITIAL_MANAGEMENT") or None
    if args.acl_initial_management_token_file:
        try:
            with open(args.acl_initial_management_token_file, encoding="utf-8") as f:
                secret = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read --acl-initial-management-token-file: {exc}") from None
        if not secret:
            raise ValueError("--acl-initial-management-token-file is empty")
    if secret is not None and (policy is None or any(c.isspace() for c in secret)):
        raise ValueError("an initial management token needs --acl, and a secret without spaces")
    return policy, secret


def own_token_headers(secret: str | None) -> dict | None:
    """What this node sends to its peers' HTTP APIs (joining, the removal check) when ACLs are
    on: its initial management token, Consul's agent token in effect. None without one."""
    return {"X-Consul-Token": secret} if secret else None


async def keep_initial_management(node, secret: str, stop: asyncio.Event, timeout_s: float) -> None:
    """Until this node's replicated state holds a token with `secret`: when leading, propose
    it. `node`: an api.node_port.Node. Ends when the token is there or `stop` is set."""
    hashed = secret_hash(secret)
    while not stop.is_set():
        with node.read_view() as view:
            if view.acl().token_for_secret(hashed) is not None:
                return
        if node.is_leader:
            fields = {"accessor_id": str(uuid.uuid4()), "secret_hash": hashed, "policy_ids": [GLOBAL_MANAGEMENT_ID],
                      "description": "Initial Management Token", "local": False,
                      "create_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
            try:
                result = await node.propose(AclOp("bootstrap", {"token": fields, "initial": True}), timeout_s)
            except RaftkvError as exc:
                log.warning("ACL: the initial management token is not created yet (%s); trying again", exc)
            else:
                if result.ok:
                    log.info("ACL: initial management token created (AccessorID %s)", fields["accessor_id"])
                    continue  # applied here: the check above ends the loop
                log.warning("ACL: the initial management token was refused: %s", result.error)
                return
        await node.wait_for_cluster_change(RECHECK_S)
