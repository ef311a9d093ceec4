"""/v1/session: Consul's session endpoints over the node (records: node/sessions.py; TTL timers
and lock-delay: node/session_keeper.py), and GET /v1/agent/self with what clients read of it.

Create and destroy are writes through the log. A renewal only resets the leader's timer, so it
is answered by the leader (forwarded there), after a read barrier: a deposed leader cannot
renew a session its successor is timing. Reads block like KV's (`?index=&wait=`) on the
session table's index, which every create and end of a session raises.
"""

from __future__ import annotations

import json
import time
import uuid

from aiohttp import web

from api.context import CTX, ApiContext
from api.errors import HTTPProblem, bad_request, unavailable
from api.forward import FORWARDED_HEADER, ForwardRequest
from api.kv import meta_headers
from api.limits import read_body
from api.params import ReadParams, parse_duration, read_params
from api.reads import reverify, route_read
from api.reply import Reply
from node.codec import SessionOp
from node.reads import Consistency
from node.sessions import BEHAVIORS, Session
from node.state_machine import SESSIONS_WATCH_KEY

SESSION_TTL_MIN_S = 10.0  # Consul's session_ttl_min default
SESSION_TTL_MAX_S = 86400.0  # Consul's SessionTTLMax (24h)
MAX_LOCK_DELAY_NS = 60 * 10**9  # Consul's MaxLockDelay: longer ones are cut to it
DEFAULT_LOCK_DELAY_NS = 15 * 10**9
_LOCK_DELAY_SECONDS_BELOW = 1000  # Consul: a LockDelay below this is seconds, not nanoseconds
SERF_CHECK = "serfHealth"
DATACENTER = "dc1"
MAX_SESSION_BODY_BYTES = 64 * 1024


def session_json(s: Session) -> dict:
    return {"ID": s.id, "Name": s.name, "Node": s.node, "LockDelay": s.lock_delay_ns, "Behavior": s.behavior,
            "TTL": s.ttl, "NodeChecks": list(s.node_checks), "ServiceChecks": None,
            "CreateIndex": s.create_index, "ModifyIndex": s.modify_index}


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String for whole seconds, as Consul prints its bounds ("10s", "24h0m0s")."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


# -- create ---------------------------------------------------------------------------------

async def create(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await read_body(request, MAX_SESSION_BODY_BYTES, "session", ctx.config.body_timeout_s)
    args = parse_create(body, ctx.node.node_id)
    ctx.acl.authorize(request.headers, request.query).require_session(args["node"], "write")
    if args["node"] not in {node_id for node_id, _ in ctx.node.members().values()} | {ctx.node.node_id}:
        raise bad_request("Missing node registration")  # Consul's line (with a 500) for a node it does not know
    result = await ctx.node.propose(SessionOp("create", args), ctx.config.request_timeout_s)
    if not result.ok:
        raise HTTPProblem(500, result.error or "session not created")
    return Reply.json({"ID": args["id"]}).to_web()


def parse_create(body: bytes, default_node: str) -> dict:
    """The SessionOp arguments of a create request's body (Consul's defaults and checks; field
    names match case-insensitively, as Go decodes JSON); 400 with a reason when invalid."""
    doc: dict = {}
    if body.strip():
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"Request decode failed: {exc}") from None
        if not isinstance(doc, dict):
            raise bad_request("Request decode failed: the body must be a JSON object")
    fields = {k.lower(): v for k, v in doc.items()}

    def text(name: str, default: str) -> str:
        value = fields.get(name.lower())
        if value is None:
            return default
        if not isinstance(value, str):
            raise bad_request(f"Request decode failed: {name} must be a string")
        return value

    behavior = text("Behavior", "") or "release"
    if behavior not in BEHAVIORS:
        raise bad_request(f"Invalid Behavior setting '{behavior}'")
    ttl = text("TTL", "")
    ttl_ns = _ttl_ns(ttl)
    return {"id": str(uuid.uuid4()), "name": text("Name", ""), "node": text("Node", "") or default_node,
            "lock_delay_ns": _lock_delay_ns(fields.get("lockdelay")), "behavior": behavior,
            "ttl": ttl, "ttl_ns": ttl_ns, "node_checks": _node_checks(fields)}


def _ttl_ns(ttl: str) -> int:
    if not ttl:
        return 0
    try:
        seconds = parse_duration(ttl)
    except ValueError as exc:
        raise bad_request(f"Session TTL '{ttl}' invalid: time: {exc}") from None
    if seconds != 0 and not SESSION_TTL_MIN_S <= seconds <= SESSION_TTL_MAX_S:
        raise bad_request(f"Invalid Session TTL '{round(seconds * 1e9)}', must be between "
                          f"[{go_duration(SESSION_TTL_MIN_S)}={go_duration(SESSION_TTL_MAX_S)}]")
    return round(seconds * 1e9)


def _lock_delay_ns(value) -> int:
    """A Go duration string or a number of nanoseconds; below 1000 either is seconds (Consul's
    fix-up for clients that send 15 meaning 15 s); capped at 60 s as Consul applies it."""
    if value is None:
        return DEFAULT_LOCK_DELAY_NS
    if isinstance(value, str):
        try:
            ns = round(parse_duration(value) * 1e9)
        except ValueError as exc:
            raise bad_request(f"Request decode failed: LockDelay: time: {exc}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 2**63:
        ns = int(value)
    else:
        raise bad_request("Request decode failed: LockDelay must be a duration string or a number")
    if ns < _LOCK_DELAY_SECONDS_BELOW:
        ns *= 10**9
    return max(0, min(ns, MAX_LOCK_DELAY_NS))


def _node_checks(fields: dict) -> list[str]:
    """raftkv has no health checks: sessions are TTL sessions. serfHealth (Consul's default) is
    accepted and shown but not enforced; any other check is refused, not silently ignored."""
    service_checks = fields.get("servicechecks")
    if service_checks not in (None, []):
        raise bad_request("ServiceChecks are not supported: raftkv sessions are TTL sessions (no health checks)")
    given = {name: fields[name.lower()] for name in ("NodeChecks", "Checks") if fields.get(name.lower()) is not None}
    for name, checks in given.items():  # Checks is NodeChecks' old name: both are checked
        if not isinstance(checks, list) or not all(isinstance(c, str) for c in checks):
            raise bad_request(f"Request decode failed: {name} must be a list of check IDs")
        unsupported = [c for c in checks if c != SERF_CHECK]
        if unsupported:
            raise bad_request(f"Check '{unsupported[0]}' is not supported: raftkv sessions are TTL sessions "
                              f"(only {SERF_CHECK} may be named)")
    checks = given.get("NodeChecks", given.get("Checks", [SERF_CHECK]))
    return list(dict.fromkeys(checks))


# -- destroy, renew -------------------------------------------------------------------------

def _session_id(request: web.Request) -> str:
    session_id = request.match_info.get("id", "")
    if not session_id:
        raise bad_request("Missing session")
    return session_id


async def destroy(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    session_id = _session_id(request)
    authz = ctx.acl.authorize(request.headers, request.query)
    if ctx.acl.enabled:  # Consul checks session:write on the session's node
        with ctx.node.read_view() as view:
            session = view.sessions().get(session_id)
        if session is None:
            raise bad_request(f'Unknown session "{session_id}"')  # Consul's line, with a 500
        authz.require_session(session.node, "write")
    result = await ctx.node.propose(SessionOp("destroy", {"id": session_id}), ctx.config.request_timeout_s)
    if not result.ok:
        raise HTTPProblem(500, result.error or "session not destroyed")
    return Reply.json(True).to_web()


async def renew(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    session_id = _session_id(request)
    authz = ctx.acl.authorize(request.headers, request.query)
    forwarded = await ctx.forwarder.route(ForwardRequest.of(request), None, is_write=True)
    if forwarded is not None:
        return forwarded.to_web()
    # Leading still, and having applied every entry committed before this request.
    await ctx.node.prepare_read(Consistency.CONSISTENT, None, ctx.config.request_timeout_s)
    if not ctx.node.is_leader:  # deposed meanwhile: the new leader's timer is the one that counts
        raise unavailable("leadership changed while renewing; retry")
    with ctx.node.read_view() as view:
        sessions = view.sessions()
        session, index = sessions.get(session_id), sessions.index
    if session is None:
        return Reply.text(404, f"Session id '{session_id}' not found").to_web()
    authz.require_session(session.node, "write")
    ctx.node.session_renewed(session.id, session.ttl_ns)
    return Reply.json([session_json(session)], meta_headers(ctx, index, Consistency.CONSISTENT)).to_web()


# -- reads ----------------------------------------------------------------------------------

async def info(request: web.Request) -> web.Response:
    session_id = _session_id(request)
    return await _read(request, lambda s: s.id == session_id)


async def list_all(request: web.Request) -> web.Response:
    return await _read(request, lambda s: True)


async def for_node(request: web.Request) -> web.Response:
    node = request.match_info.get("node", "")
    if not node:
        raise bad_request("Missing node name")
    return await _read(request, lambda s: s.node == node)


async def _read(request: web.Request, wanted) -> web.Response:
    """The sessions `wanted` selects, sorted by ID, as a blocking query on the session table."""
    ctx = request.app[CTX]
    params = read_params(request.query)
    if params.index and FORWARDED_HEADER not in request.headers:  # counted where the client connected
        with ctx.blocking.hold(request.remote or ""):
            return await _blocking_read(ctx, request, params, wanted)
    return await _blocking_read(ctx, request, params, wanted)


async def _blocking_read(ctx: ApiContext, request: web.Request, params: ReadParams, wanted) -> web.Response:
    authz = ctx.acl.authorize(request.headers, request.query)
    hold_s = params.wait_s * (1 + 1 / 16) if params.index else 0.0
    forwarded = await route_read(ctx, request, params.consistency, params.max_stale_s, hold_s)
    if forwarded is not None:
        return forwarded.to_web()
    index, found = _sessions(ctx, wanted)
    if params.index and index <= params.index:
        deadline = time.monotonic() + params.wait_s
        while index <= params.index and (left := deadline - time.monotonic()) > 0:
            await ctx.node.wait_for_change(SESSIONS_WATCH_KEY, False, left)
            await reverify(ctx, params.consistency)
            index, found = _sessions(ctx, wanted)
    if ctx.acl.enabled:  # Consul filters sessions down to those whose node the token may read
        found = [s for s in found if authz.session_allowed(s.node, "read")]
    return Reply.json([session_json(s) for s in found], meta_headers(ctx, index, params.consistency)).to_web()


def _sessions(ctx: ApiContext, wanted) -> tuple[int, list[Session]]:
    with ctx.node.read_view() as view:
        sessions = view.sessions()
        return sessions.index, sorted((s for s in sessions.sessions.values() if wanted(s)), key=lambda s: s.id)


# -- agent ----------------------------------------------------------------------------------

async def agent_self(request: web.Request) -> web.Response:
    """What clients read of Consul's /v1/agent/self: the node's name (`consul lock` and the
    Consul API's Lock name their session's node with it), datacenter, and member record."""
    ctx = request.app[CTX]
    node = ctx.node
    host, _, port = node.raft_address.rpartition(":")
    config = {"Datacenter": DATACENTER, "PrimaryDatacenter": DATACENTER, "NodeName": node.node_id,
              "NodeID": str(uuid.uuid5(uuid.NAMESPACE_URL, "raftkv:" + node.node_id)), "Server": True,
              "Version": "raftkv", "Revision": "", "SessionTTLMin": go_duration(SESSION_TTL_MIN_S)}
    member = {"Name": node.node_id, "Addr": host, "Port": int(port) if port.isdigit() else 0,
              "Tags": {"role": "consul", "dc": DATACENTER, "raftkv": "1"}, "Status": 1}
    return Reply.json({"Config": config, "Member": member, "Meta": {}}).to_web()


def register(app: web.Application) -> None:
    app.router.add_put("/v1/session/create", create)
    app.router.add_put("/v1/session/destroy/{id}", destroy)
    app.router.add_put("/v1/session/renew/{id}", renew)
    app.router.add_get("/v1/session/info/{id}", info)
    app.router.add_get("/v1/session/list", list_all)
    app.router.add_get("/v1/session/node/{node}", for_node)
    app.router.add_get("/v1/agent/self", agent_self)
