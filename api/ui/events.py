"""GET /v1/raftkv/ui/events: the console's live view as server-sent events.

The page talks only to the node that served it; this stream asks the other members for their
own view (/v1/raftkv/status, as `raftkv status` does: api/cluster_view.py) and sends:

* `cluster`: every member's row (role, term, indexes, lag, last contact, health);
* `timeline`: the node's new timeline events (node/timeline.py);
* `metrics`: this node's request counts and latency histogram, cumulative: the page draws
  rates from the differences.

When: at once, then whenever the timeline records something (leader changes, elections,
membership, snapshots: `wait_for_timeline`, the node's own Pulse), whenever a cheap local
signature changes (leader, indexes, unreachable peers, client requests; read once a second,
in process), and otherwise every KEEPALIVE_S, which also refreshes the other members' rows.
An idle page therefore costs one fan-out per KEEPALIVE_S; while the members do not agree on
one leader (a change under way, or none), one per CHECK_S. Each stream asks with its own
client's token (the browser's, which EventSource cannot send: the page reads this stream
with fetch), so one stream per open page; pages are few. `?once` sends one round and ends.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time

import aiohttp
from aiohttp import web

from api.cluster_view import combine, members_of
from api.context import CTX, ApiContext
from api.http_client import client_session
from api.request_metrics import KV_ROUTE, LATENCY_BUCKETS_S
from api.status import own_status

KEEPALIVE_S = 15.0
CHECK_S = 1.0  # how often the local signature is read (no I/O)
PEER_TIMEOUT_S = 2.0  # a member that has not answered by then is shown down
STATUS_PATH = "/v1/raftkv/status"
_CLIENT_ROUTES = (KV_ROUTE, "/v1/txn", "/v1/session/", "/v1/snapshot")  # what the charts count
STREAMS = web.AppKey("ui_streams", set[asyncio.Task])


class PeerStatus:
    """Asks other members for their /v1/raftkv/status over one session of its own (not the
    forwarder's: these calls are no forwarded requests and must not count as such)."""

    def __init__(self, peer_ssl: ssl.SSLContext | None) -> None:
        self.peer_ssl = peer_ssl
        self._session: aiohttp.ClientSession | None = None

    async def ask(self, http: str, headers: dict[str, str]) -> dict | None:
        if self._session is None:
            self._session = client_session(connector=aiohttp.TCPConnector(ssl=self.peer_ssl or True))
        url = f"{'https' if self.peer_ssl else 'http'}://{http}{STATUS_PATH}"
        try:
            async with self._session.get(url, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)) as resp:
                return await resp.json() if resp.status == 200 else None
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return None  # shown down

    async def close(self, _app: web.Application | None = None) -> None:
        if self._session is not None:
            await self._session.close()


PEERS = web.AppKey("ui_peers", PeerStatus)


async def cluster_view(ctx: ApiContext, peers: PeerStatus, headers: dict[str, str]) -> dict:
    here = own_status(ctx)

    async def ask(member: dict) -> tuple[dict, dict | None]:
        if member["raft"] == here["raft"]:
            return member, here
        return member, await peers.ask(member["http"], headers)

    view = combine(here, list(await asyncio.gather(*(ask(m) for m in members_of(here)))))
    view["self"] = here["raft"]
    view["cluster_id"] = here.get("cluster_id")
    return view


def _is_client_route(route: str) -> bool:
    return route.startswith(_CLIENT_ROUTES)


def metrics_doc(ctx: ApiContext) -> dict:
    """Cumulative counts of client requests on this node (both fronts), and their latencies."""
    requests = sum(n for labels, n in list(ctx.requests.count.items()) if _is_client_route(labels[0]))
    buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)
    total_s = 0.0
    for labels, histogram in list(ctx.requests.latency.items()):
        if _is_client_route(labels[0]):
            total_s += histogram.sum
            for i, n in enumerate(list(histogram.counts)):
                buckets[i] += n
    m = ctx.node.metrics()
    return {"t": round(time.time(), 3), "requests": requests, "latency_sum_s": total_s, "latency_buckets": buckets,
            "bounds_s": list(LATENCY_BUCKETS_S), "writes_proposed": m.writes_proposed,
            "applied_index": m.applied_index}


def signature(ctx: ApiContext) -> tuple:
    """What, once changed, is worth a new push (read in process: no I/O)."""
    m = ctx.node.metrics()
    requests = sum(n for labels, n in list(ctx.requests.count.items()) if _is_client_route(labels[0]))
    return (ctx.node.leader, ctx.node.leader_http(), m.term, m.commit_index, m.applied_index,
            tuple(ctx.node.unreachable_peers()), requests)


def sse(event: str, doc) -> bytes:
    return f"event: {event}\ndata: {json.dumps(doc, separators=(',', ':'))}\n\n".encode()


async def ui_events(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    headers = {k: v for k, v in request.headers.items() if k.lower() in ("x-consul-token", "authorization")}
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
    await resp.prepare(request)
    task = asyncio.current_task()
    assert task is not None  # a handler runs in its task
    streams = request.app[STREAMS]
    streams.add(task)
    seq = 0
    once = "once" in request.query  # one round and the end: for curl, and for the API's fuzz test
    try:
        while True:
            view = await cluster_view(ctx, request.app[PEERS], headers)
            await resp.write(sse("cluster", view))
            events = ctx.node.timeline_since(seq)
            if events:
                seq = events[-1]["seq"]
                await resp.write(sse("timeline", events))
            await resp.write(sse("metrics", metrics_doc(ctx)))
            if once:
                break
            await _until_worth_sending(ctx, seq, signature(ctx), KEEPALIVE_S if settled(view) else CHECK_S)
    except ConnectionError:
        pass  # the page went away
    finally:
        streams.discard(task)
    return resp


def settled(view: dict) -> bool:
    """One member says it leads. Right after a leadership change the old leader may still say
    so (it steps down when the new term reaches it), and nothing changes on this node when it
    does: an unsettled view is asked again after CHECK_S, not KEEPALIVE_S."""
    return sum(n["state"] == "leader" for n in view["nodes"]) == 1


async def _until_worth_sending(ctx: ApiContext, seq: int, sent: tuple, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while (left := deadline - time.monotonic()) > 0:
        await ctx.node.wait_for_timeline(min(CHECK_S, left))
        events = ctx.node.timeline_since(seq)
        if events or signature(ctx) != sent:
            return


async def close_streams(app: web.Application) -> None:
    """on_shutdown: end the open streams, which would otherwise hold the runner's cleanup."""
    streams = app[STREAMS]
    for task in list(streams):
        task.cancel()
