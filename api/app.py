"""The aiohttp application factory: routes, middleware, resources."""

from __future__ import annotations

import asyncio

from aiohttp import web

from api import health, kv, metrics_routes, operator, sessions, snapshot, status, txn, ui, ui_kv
from api.acl import routes as acl_routes
from api.acl.authz import DEFAULT_POLICY_HEADER, AclEnforcer
from api.acl.guards import operator_only
from api.clean_path import clean_path_middleware
from api.context import CTX, ApiConfig, ApiContext
from api.errors import error_middleware
from api.forward import LeaderForwarder
from api.head_watch import HeadWatches, head_watch_middleware
from api.limits import BlockingSlots, ClientConnections, url_limit_middleware
from api.metrics import METRICS_REGISTRY, scrape_registry
from api.node_port import Node
from api.request_metrics import RequestMetrics, request_metrics_middleware


def make_app(node: Node, config: ApiConfig | None = None) -> web.Application:
    config = config or ApiConfig()
    head_watches = HeadWatches()
    requests = RequestMetrics()
    app = web.Application(
        middlewares=[request_metrics_middleware(requests), error_middleware, url_limit_middleware(config.max_url_bytes),
                     clean_path_middleware, head_watch_middleware(head_watches)],
        client_max_size=max(config.max_value_bytes, config.max_txn_bytes, config.max_restore_bytes) + 1,
    )
    forwarder = LeaderForwarder(node, config.request_timeout_s, config.peer_ssl)
    acl = AclEnforcer(node, config.acl_default_policy)
    app[CTX] = ApiContext(node=node, config=config, forwarder=forwarder, acl=acl,
                          connections=ClientConnections(config.max_conns_per_client),
                          blocking=BlockingSlots(config.max_blocking_per_client), head_watches=head_watches,
                          requests=requests)
    app[METRICS_REGISTRY] = scrape_registry(node, requests, forwarder)

    async def default_acl_policy(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers[DEFAULT_POLICY_HEADER] = acl.header_value  # on every answer, as Consul

    async def close_forwarder(_app: web.Application) -> None:
        await forwarder.close()

    async def attach_node(_app: web.Application) -> None:
        node.attach(asyncio.get_running_loop())  # where the node delivers its events

    app.on_startup.append(attach_node)
    app.on_response_prepare.append(default_acl_policy)
    app.on_cleanup.append(close_forwarder)
    app.router.add_get("/v1/kv/{key:(?s:.*)}", kv.get_kv)
    app.router.add_put("/v1/kv/{key:(?s:.*)}", kv.put_kv)
    app.router.add_delete("/v1/kv/{key:(?s:.*)}", kv.delete_kv)
    app.router.add_put("/v1/txn", txn.put_txn)
    app.router.add_get("/v1/snapshot", snapshot.get_snapshot)
    app.router.add_put("/v1/snapshot", snapshot.put_snapshot)
    app.router.add_get("/v1/status/leader", status.status_leader)
    app.router.add_get("/v1/status/peers", status.status_peers)
    app.router.add_get("/v1/raftkv/status", operator_only("read", status.raftkv_status))
    app.router.add_get("/livez", health.livez)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/v1/operator/autopilot/health", operator_only("read", health.autopilot_health))
    metrics_routes.register(app)
    operator.register(app)
    acl_routes.register(app)
    sessions.register(app)
    ui.register(app)
    ui_kv.register(app)
    return app

