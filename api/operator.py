"""/v1/operator/raft: membership as Consul shows and changes it, plus raftkv's own add.

Every change runs on the leader (a follower forwards it) and goes through the log as one
`ConfigOp`, applied by every node at commit (node.state_machine). The rules, each refusal a
4xx that changed nothing:
* one change at a time: a second one while the first is not yet applied is a 409;
* removing an unknown member is a 404; removing the leader first hands leadership over,
  then the new leader removes it;
* a removal that would leave fewer reachable voters than the new quorum needs is a 409,
  unless `force` is given;
* adding an address whose Raft port does not answer is a 409. A node is added as a
  learner; the leader promotes it to voter once it has caught up (node.raft).
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from api.acl.guards import operator_only
from api.addresses import AddressError, parse_hostport
from api.context import CTX
from api.errors import HTTPProblem, bad_request
from api.forward import ForwardRequest
from api.reply import Reply
from node.codec import ConfigOp
from node.errors import MembershipBusyError

TRANSFER_WAIT_S = 5.0


def servers_json(node) -> dict:
    config = node.configuration()
    members, leader = config["members"], node.leader
    servers = []
    for addr, voter in [(v, True) for v in config["voters"]] + [(a, False) for a in sorted(config["learners"])]:
        node_id = members.get(addr, (config["learners"].get(addr, ""), ""))[0] or addr
        servers.append({"ID": node_id, "Node": node_id, "Address": addr, "Leader": addr == leader,
                        "Voter": voter, "ProtocolVersion": "3"})
    return {"Servers": servers, "Index": config["index"], "ClusterID": config["cluster_id"]}


async def _on_leader(request: web.Request, body: bytes | None = None) -> web.Response | None:
    """None when this node leads; else the leader's answer to the forwarded request."""
    reply = await request.app[CTX].forwarder.route(ForwardRequest.of(request), body, is_write=True)
    return None if reply is None else reply.to_web()


def leader_only(handler):
    """Run `handler` on the leader: a follower forwards the request and relays the answer."""
    async def on_leader(request: web.Request) -> web.Response:
        forwarded = await _on_leader(request)
        return forwarded if forwarded is not None else await handler(request)
    return on_leader


async def get_configuration(request: web.Request) -> web.Response:
    if "stale" not in request.query:
        reply = await request.app[CTX].forwarder.route(ForwardRequest.of(request), None, is_write=False)
        if reply is not None:
            return reply.to_web()
    return Reply.json(servers_json(request.app[CTX].node)).to_web()


def _find(node, query) -> str:
    """The Raft address named by ?id= or ?address=; 404 when no member has it."""
    config = node.configuration()
    members = config["members"]
    every = list(config["voters"]) + list(config["learners"])
    if "address" in query:
        addr = query["address"]
        if addr not in every:
            raise HTTPProblem(404, f"no member at address {addr}")
        return addr
    if "id" in query:
        wanted = query["id"]
        for addr in every:
            if members.get(addr, (config["learners"].get(addr),))[0] == wanted or addr == wanted:
                return addr
        raise HTTPProblem(404, f"no member with id {wanted}")
    raise bad_request("give the member as ?id=ID or ?address=HOST:PORT")


async def _change(request: web.Request, op: ConfigOp) -> None:
    ctx = request.app[CTX]
    try:
        result = await ctx.node.change_config(op, ctx.config.request_timeout_s)
    except MembershipBusyError as exc:
        raise HTTPProblem(409, str(exc)) from None
    if not result.ok:
        raise HTTPProblem(409, f"membership change refused: {result.error}")


@leader_only
async def delete_peer(request: web.Request) -> web.Response:
    node = request.app[CTX].node
    target = _find(node, request.query)
    if target == node.raft_address:
        # The leader cannot remove itself: hand leadership over, then let the new leader do it.
        await transfer(node, None)
        target_http = node.leader_http()
        if node.is_leader or target_http is None:
            raise HTTPProblem(503, "leadership did not move; the leader was not removed", {"Retry-After": "1"})
        # A second, deliberate hop (the request may have been forwarded to us already).
        return (await request.app[CTX].forwarder.send(ForwardRequest.of(request), target_http, None,
                                                       is_write=True)).to_web()
    config = node.configuration()
    if target in config["voters"] and not _flag(request.query, "force"):
        remaining = [v for v in config["voters"] if v != target]
        down = set(node.unreachable_peers())
        live = [v for v in remaining if v == node.raft_address or v not in down]
        needed = len(remaining) // 2 + 1
        if len(live) < needed:
            raise HTTPProblem(409, f"removing {target} would leave {len(live)} reachable of {len(remaining)} voters, "
                                   f"fewer than the {needed} a quorum needs; add ?force=true to remove it anyway")
    await _change(request, ConfigOp("remove", target))
    return Reply.json(True).to_web()


@leader_only
async def put_peer(request: web.Request) -> web.Response:
    node = request.app[CTX].node
    q = request.query
    try:
        # Names resolve when dialled (a connection below, the event loop's look-up): none blocks the loop here.
        addr = parse_hostport(q.get("address", ""), "address", resolve=False)
        http = parse_hostport(q["http"], "http", resolve=False) if q.get("http") else ""
    except AddressError as exc:
        raise bad_request(str(exc)) from None
    node_id = q.get("id") or addr
    config = node.configuration()
    if addr in config["voters"]:
        return Reply.json(True).to_web()  # already a member: a repeated join is harmless
    if addr not in config["learners"]:
        if not await _answers(addr):
            raise HTTPProblem(409, f"nothing answers at Raft address {addr}; start the node first (with --join)")
        await _change(request, ConfigOp("add-learner", addr, node_id, http))
    return Reply.json(True).to_web()


@leader_only
async def transfer_leader(request: web.Request) -> web.Response:
    node = request.app[CTX].node
    target = _find(node, request.query) if ("id" in request.query or "address" in request.query) else None
    if target is not None and target not in node.configuration()["voters"]:
        raise HTTPProblem(409, f"{target} is not a voter")
    if target == node.raft_address:
        return Reply.json({"Success": True}).to_web()
    await transfer(node, target)
    return Reply.json({"Success": True}).to_web()


async def transfer(node, target: str | None) -> str:
    """Hand leadership to `target` (None: the most caught-up voter); the new leader's address.
    PySyncObj refuses while the target lacks an entry, so it is asked again until the deadline."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + TRANSFER_WAIT_S
    me = node.raft_address
    while time.monotonic() < deadline:
        if not node.is_leader:
            leader = await node.wait_for_leader(max(0.1, deadline - time.monotonic()))
            if leader != me:
                return leader
        else:
            done = loop.create_future()

            def finished(ok: bool, done=done) -> None:
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(ok))

            node.transfer_leadership(target, finished)
            with_timeout = asyncio.wait_for(done, 1.0)
            try:
                await with_timeout
            except TimeoutError:
                pass
        await asyncio.sleep(0.01)
    raise HTTPProblem(503, "leadership could not be transferred in time (no caught-up voter reachable?)",
                      {"Retry-After": "1"})


async def _answers(addr: str) -> bool:
    host, _, port = addr.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1.0)
    except (OSError, TimeoutError, ValueError):
        return False
    writer.close()
    return True


def _flag(query, name: str) -> bool:
    return name in query and query[name].lower() not in ("false", "0", "no")


def register(app: web.Application) -> None:
    app.router.add_get("/v1/operator/raft/configuration", operator_only("read", get_configuration))
    app.router.add_delete("/v1/operator/raft/peer", operator_only("write", delete_peer))
    app.router.add_put("/v1/operator/raft/peer", operator_only("write", put_peer))
    app.router.add_post("/v1/operator/raft/transfer-leader", operator_only("write", transfer_leader))
