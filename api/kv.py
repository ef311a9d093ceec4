"""/v1/kv handlers: Consul's KV wire format over the node.

Reads: who answers and what is checked first is the node's decision (`api.reads.route_read`);
blocking queries (`?index=N&wait=D`) wait for the node to report a change of their key.
Writes are proposed on the node that received them: on a follower, PySyncObj carries the
entry to the leader over the Raft connection (no second HTTP hop), and the answer comes once
the entry is committed and applied here.
Writes always go through the leader and answer only once committed on a majority's disk.
The handlers are thin aiohttp adapters over `read_value`, `write_value` and `delete_value`,
which api.fast_http's lean front calls directly. Those three check the request's ACL token
(api/acl/authz.py) themselves, so neither front can skip the check.
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii

from aiohttp import web

from api.acl.authz import Authorizer
from api.context import CTX, ApiContext
from api.errors import HTTPProblem, bad_request
from api.forward import FORWARDED_HEADER
from api.limits import read_body
from api.params import ReadParams, read_params, request_key, uint_param
from api.reads import reverify, route_read
from api.reply import Reply
from node.codec import DeleteOp, LockOp, SetOp
from node.reads import Consistency
from node.state_machine import KVEntry


def entry_json(key: str, entry: KVEntry) -> dict:
    doc = {
        "LockIndex": entry.lock_index,
        "Key": key,
        "Flags": entry.flags,
        "Value": base64.b64encode(entry.value).decode("ascii") if entry.value else None,
        "CreateIndex": entry.create_index,
        "ModifyIndex": entry.modify_index,
    }
    if entry.session is not None:  # Consul omits it when unlocked
        doc["Session"] = entry.session
    return doc


_ONE_ENTRY = '[{"LockIndex": %d, "Key": %s, "Flags": %d, "Value": %s, "CreateIndex": %d, "ModifyIndex": %d%s}]'


def one_entry_body(key: str, entry: KVEntry) -> bytes:
    """`json.dumps([entry_json(key, entry)]).encode()`, byte for byte, formatted directly: the
    answer to every single-key read, where json.dumps built a new encoder per call."""
    value = '"' + base64.b64encode(entry.value).decode("ascii") + '"' if entry.value else "null"
    session = "" if entry.session is None else ', "Session": ' + encode_basestring_ascii(entry.session)
    return (_ONE_ENTRY % (entry.lock_index, encode_basestring_ascii(key), entry.flags, value, entry.create_index,
                          entry.modify_index, session)).encode("ascii")


def meta_headers(ctx: ApiContext, index: int, consistency: Consistency) -> dict[str, str]:
    node = ctx.node
    last_contact = node.last_contact_ms
    if last_contact is None:  # never heard from a leader: as old as this process
        last_contact = node.uptime_ms
    return {
        "X-Consul-Index": str(max(index, 1)),
        "X-Consul-KnownLeader": "true" if node.leader is not None else "false",
        "X-Consul-LastContact": str(last_contact),
        "X-Consul-Effective-Consistency": consistency.value,
    }


async def get_kv(request: web.Request) -> web.StreamResponse:
    params = read_params(request.query)
    key = request_key(request.match_info.get("key", ""), request.raw_path, allow_empty=params.recurse or params.keys)
    ctx = request.app[CTX]
    if params.index and FORWARDED_HEADER not in request.headers:  # counted where the client connected
        with ctx.blocking.hold(request.remote or ""):
            return (await read_value(ctx, request, key, params)).to_web()
    return (await read_value(ctx, request, key, params)).to_web()


async def read_value(ctx: ApiContext, request, key: str, params: ReadParams) -> Reply:
    """A read of one key or a prefix, blocking when asked to. `request` (either front's) is
    only forwarded, as a ForwardRequest built when the node says the leader must answer.
    Checked here, before any wait: key:read on the key; a listing shows only readable keys."""
    authz = ctx.acl.authorize(request.headers, request.query)
    if not (params.recurse or params.keys):
        authz.require_key(key, "read")
    hold_s = params.wait_s * (1 + 1 / 16) if params.index else 0.0
    forwarded = await route_read(ctx, request, params.consistency, params.max_stale_s, hold_s)
    if forwarded is not None:
        return forwarded
    index, respond = _query(ctx, key, params, authz)
    if params.index and index <= params.index:
        # Blocking query (Consul's rules): hold until the result's index passes the client's,
        # or the wait (plus up to wait/16 of jitter, to spread reconnecting watchers) ends.
        deadline = time.monotonic() + params.wait_s + random.uniform(0, params.wait_s / 16)
        watched_prefix = params.recurse or params.keys
        while index <= params.index and (left := deadline - time.monotonic()) > 0:
            await ctx.node.wait_for_change(key, watched_prefix, left)
            await reverify(ctx, params.consistency)  # on every wake-up, as Consul's consistent mode does
            index, respond = _query(ctx, key, params, authz)
    return respond()


def _query(ctx: ApiContext, key: str, params: ReadParams, authz: Authorizer):
    """Run the read on this node's state: (index it reflects, a function building the reply)."""
    with ctx.node.read_view() as view:
        if params.keys or params.recurse:
            items = view.items_with_prefix(key)
            index = view.prefix_index(key, items)
            if ctx.acl.enabled:  # Consul filters a listing down to the keys the token may read
                items = [(k, e) for k, e in items if authz.key_read(k)]
        else:
            entry, index = view.get_with_index(key)
    if params.keys or params.recurse:
        headers = meta_headers(ctx, index, params.consistency)
        if params.keys:
            names = _fold_keys(items, key, params.separator)
            if ctx.acl.enabled:  # a folded name ("dir/") is filtered by its own name, as Consul
                names = [n for n in names if authz.key_read(n)]
            if not names and key:
                return index, lambda: Reply(404, headers=headers, content_type=None)
            return index, lambda: Reply.json(names, headers)
        if not items:
            return index, lambda: Reply(404, headers=headers, content_type=None)
        return index, lambda: Reply.json([entry_json(k, e) for k, e in items], headers)
    headers = meta_headers(ctx, index, params.consistency)
    if entry is None:
        return index, lambda: Reply(404, headers=headers, content_type=None)
    if params.raw:
        headers.update({"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"})
        return index, lambda: Reply(200, entry.value, headers, "text/plain")
    return index, lambda: Reply(200, one_entry_body(key, entry), headers)


def _fold_keys(items, prefix: str, sep: str | None) -> list[str]:
    """Key names under `prefix`, cut just after the first `sep` past the prefix (Consul's fold)."""
    names: list[str] = []
    for key, _ in items:
        if sep:
            cut = key.find(sep, len(prefix))
            if cut >= 0:
                key = key[: cut + len(sep)]
        if not names or names[-1] != key:
            names.append(key)
    return names


async def put_kv(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    key = request_key(request.match_info.get("key", ""), request.raw_path, allow_empty=False)
    body = await read_body(request, ctx.config.max_value_bytes, "value", ctx.config.body_timeout_s)
    return (await write_value(ctx, key, request.query, body, request.headers)).to_web()


async def write_value(ctx: ApiContext, key: str, query: Mapping[str, str], body: bytes,
                      headers: Mapping[str, str]) -> Reply:
    """`headers` carry the ACL token (with ?token=): key:write on the key."""
    ctx.acl.authorize(headers, query).require_key(key, "write")
    flags = uint_param(query, "flags") or 0
    cas = uint_param(query, "cas")
    limit = ctx.config.max_value_bytes
    if len(body) > limit:
        raise HTTPProblem(413, f"value too large: {len(body)} bytes, the limit is {limit}")
    if "release" in query or "acquire" in query:  # as Consul: release, then acquire, then cas wins
        acquire = "release" not in query
        return await _lock(ctx, LockOp(key, body, flags, query["acquire" if acquire else "release"], acquire))
    result = await ctx.node.propose(SetOp(key, body, flags, cas), ctx.config.request_timeout_s, len(body))
    return Reply.json(result.ok)


async def _lock(ctx: ApiContext, op: LockOp) -> Reply:
    """?acquire / ?release (semantics: node/state_machine.py `_lock`). An acquire of a key under
    lock-delay answers false without reaching the log, as Consul's leader does; the barrier first
    makes this node apply every invalidation committed before the request."""
    if op.acquire:
        await ctx.node.prepare_read(Consistency.CONSISTENT, None, ctx.config.request_timeout_s)
        if ctx.node.lock_delay_left_s(op.key) > 0:
            return Reply.json(False)
    result = await ctx.node.propose(op, ctx.config.request_timeout_s, len(op.value))
    if result.error:  # an unknown session: Consul's line (with a 500, for what is the client's mistake)
        raise bad_request(result.error)
    return Reply.json(result.ok)


async def delete_kv(request: web.Request) -> web.Response:
    recurse = "recurse" in request.query
    key = request_key(request.match_info.get("key", ""), request.raw_path, allow_empty=recurse)
    return (await delete_value(request.app[CTX], key, request.query, request.headers)).to_web()


async def delete_value(ctx: ApiContext, key: str, query: Mapping[str, str], headers: Mapping[str, str]) -> Reply:
    """key:write on the key; with ?recurse, write on every key under the prefix (no rule
    inside it granting less), as Consul's KeyWritePrefix."""
    recurse = "recurse" in query
    authz = ctx.acl.authorize(headers, query)
    if recurse:
        authz.require_key_prefix_write(key)
    else:
        authz.require_key(key, "write")
    cas = uint_param(query, "cas")
    if recurse and cas is not None:
        raise HTTPProblem(400, "Conflicting flags: cas cannot be used with recurse")
    if cas == 0:  # Consul: cas=0 never deletes
        return Reply.json(False)
    result = await ctx.node.propose(DeleteOp(key, recurse, cas), ctx.config.request_timeout_s)
    return Reply.json(result.ok)
