"""The web console (README "Web console"): static files served by every node, the live event
stream, and the few reads its operations view needs. The page itself is in static/."""

from __future__ import annotations

from aiohttp import web

from api.acl.guards import operator_only
from api.context import CTX
from api.ui import events, operations, static_files


def register(app: web.Application) -> None:
    app[events.STREAMS] = set()
    app[events.PEERS] = peers = events.PeerStatus(app[CTX].config.peer_ssl)
    app.on_shutdown.append(events.close_streams)
    app.on_cleanup.append(peers.close)
    static_files.register(app)
    app.router.add_get("/v1/raftkv/ui/events", operator_only("read", events.ui_events))
    app.router.add_get("/v1/raftkv/ui/timeline", operator_only("read", timeline))
    app.router.add_get("/v1/raftkv/ui/snapshots", operations.list_snapshots)
    app.router.add_get("/v1/raftkv/ui/snapshots/{name}", operations.get_snapshot_file)
    app.router.add_get("/v1/raftkv/ui/locks", operations.list_locks)


async def timeline(request: web.Request) -> web.Response:
    return web.json_response(request.app[CTX].node.timeline_since(0))
