"""/v1/status (Consul's shapes) and /v1/raftkv/status (this node's own view, for the CLI)."""

from __future__ import annotations

from aiohttp import web

from api.context import CTX


async def status_leader(request: web.Request) -> web.Response:
    leader = request.app[CTX].node.leader
    return web.json_response(leader or "")


async def status_peers(request: web.Request) -> web.Response:
    return web.json_response(request.app[CTX].node.peers())


async def raftkv_status(request: web.Request) -> web.Response:
    node = request.app[CTX].node
    status = node.status()
    status["members"] = [
        {"raft": raft, "id": node_id, "http": http} for raft, (node_id, http) in sorted(node.members().items())
    ]
    status["leader_http"] = node.leader_http()
    forwarder = request.app[CTX].forwarder
    status["forwarded"] = {"ok": forwarder.forwarded, "failed": forwarder.forward_failures}
    return web.json_response(status)
