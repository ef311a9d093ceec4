"""/v1/status (Consul's shapes) and /v1/raftkv/status (this node's own view, for the CLI)."""

from __future__ import annotations

from aiohttp import web

from api.context import CTX, ApiContext


async def status_leader(request: web.Request) -> web.Response:
    leader = request.app[CTX].node.leader
    return web.json_response(leader or "")


async def status_peers(request: web.Request) -> web.Response:
    return web.json_response(request.app[CTX].node.peers())


async def raftkv_status(request: web.Request) -> web.Response:
    return web.json_response(own_status(request.app[CTX]))


def own_status(ctx: ApiContext) -> dict:
    """This node's view: what /v1/raftkv/status answers (and the console's stream reads locally)."""
    node = ctx.node
    status = node.status()
    status["members"] = [
        {"raft": raft, "id": node_id, "http": http} for raft, (node_id, http) in sorted(node.members().items())
    ]
    status["leader_http"] = node.leader_http()
    status["forwarded"] = {"ok": ctx.forwarder.forwarded, "failed": ctx.forwarder.forward_failures}
    return status
