"""HTTP requests counted for the metrics, on both fronts: the lean one (api.fast_http) and
aiohttp's (through `request_metrics_middleware`).

Labelled by the route *template* (`/v1/kv/{key}`, never the key: a label per key would grow
without bound), the method, the status and the consistency mode of a read. Counted in plain
Python numbers (one dict lookup and a few additions per request, on the event loop), which
api/metrics.py exports at scrape time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from aiohttp import web

from node.metrics import Histogram

# Seconds; a blocking query (?index=) is counted but kept out of the latency histogram: it
# lasts as long as it waits, up to ten minutes, and would drown every other request's latency.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
KV_ROUTE = "/v1/kv/{key}"
UNMATCHED_ROUTE = "unmatched"  # a path no route serves (its 404), named once for all of them
CLIENT_CLOSED = 499  # nginx's status for a request whose client closed the connection first
_READ_ROUTES = frozenset({KV_ROUTE, "/v1/txn"})

Labels = tuple[str, str, str, str]  # route, method, status, consistency


def consistency_of(route: str, method: str, query: Mapping[str, str]) -> str:
    """The consistency mode a KV read or a transaction asked for; "none" for anything else."""
    if route not in _READ_ROUTES or (route == KV_ROUTE and method != "GET"):
        return "none"
    if "stale" in query:
        return "stale"
    if "consistent" in query:
        return "consistent"
    return "default"


class RequestMetrics:
    def __init__(self) -> None:
        self.count: dict[Labels, int] = {}
        self.latency: dict[Labels, Histogram] = {}

    def observe(self, route: str, method: str, status: int, query: Mapping[str, str], seconds: float) -> None:
        labels = (route, method, str(status), consistency_of(route, method, query))
        self.count[labels] = self.count.get(labels, 0) + 1
        if "index" in query:
            return  # a blocking query (see LATENCY_BUCKETS_S)
        histogram = self.latency.get(labels)
        if histogram is None:
            histogram = self.latency[labels] = Histogram(LATENCY_BUCKETS_S)
        histogram.observe(seconds)


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    if resource is None:
        return UNMATCHED_ROUTE
    return KV_ROUTE if resource.canonical.startswith("/v1/kv/") else resource.canonical


def request_metrics_middleware(metrics: RequestMetrics):
    """Outermost, so it sees the status every other middleware settled on."""
    @web.middleware
    async def count_request(request: web.Request, handler):
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:  # aiohttp's own 404/405, the 301 of an unclean path
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED  # the client went away before the answer
            raise
        finally:
            metrics.observe(route_of(request), request.method, status, request.query,
                            time.perf_counter() - started)
    return count_request
