"""/v1/kv handlers: Consul's KV wire format over the node.

Reads: `stale` is served from this node's copy; default and `consistent` by the leader
(forwarded if needed); `consistent` passes a read barrier through the log first.
Writes always go through the leader and answer only once committed on a majority's disk.
"""

from __future__ import annotations

import base64

from aiohttp import web

from api.context import CTX, ApiContext
from api.errors import HTTPProblem
from api.params import ReadConsistency, key_from_path, read_params, uint_param
from node.codec import DeleteOp, SetOp
from node.state_machine import KVEntry


def entry_json(key: str, entry: KVEntry) -> dict:
    return {
        "LockIndex": entry.lock_index,
        "Key": key,
        "Flags": entry.flags,
        "Value": base64.b64encode(entry.value).decode("ascii") if entry.value else None,
        "CreateIndex": entry.create_index,
        "ModifyIndex": entry.modify_index,
    }


def meta_headers(ctx: ApiContext, index: int, consistency: ReadConsistency) -> dict[str, str]:
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
    ctx = request.app[CTX]
    params = read_params(request)
    key = key_from_path(request, allow_empty=params.recurse or params.keys)
    if params.consistency is not ReadConsistency.STALE:
        forwarded = await ctx.forwarder.route(request, None, is_write=False)
        if forwarded is not None:
            return forwarded
        if params.consistency is ReadConsistency.CONSISTENT:
            await ctx.node.propose(None, ctx.config.request_timeout_s)
    state = ctx.node.state
    if params.keys:
        return _list_keys(ctx, state, key, params)
    if params.recurse:
        items = state.items_with_prefix(key)
        headers = meta_headers(ctx, state.kv_index, params.consistency)
        if not items:
            return web.Response(status=404, headers=headers)
        return web.json_response([entry_json(k, e) for k, e in items], headers=headers)
    entry = state.get(key)
    if entry is None:
        return web.Response(status=404, headers=meta_headers(ctx, state.kv_index, params.consistency))
    headers = meta_headers(ctx, entry.modify_index, params.consistency)
    if params.raw:
        headers.update({"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"})
        return web.Response(body=entry.value, content_type="text/plain", headers=headers)
    return web.json_response([entry_json(key, entry)], headers=headers)


def _list_keys(ctx: ApiContext, state, prefix: str, params) -> web.Response:
    names: list[str] = []
    sep = params.separator
    for key, _ in state.items_with_prefix(prefix):
        if sep:
            cut = key.find(sep, len(prefix))
            if cut >= 0:
                key = key[: cut + len(sep)]
        if not names or names[-1] != key:
            names.append(key)
    headers = meta_headers(ctx, state.kv_index, params.consistency)
    if not names and prefix:
        return web.Response(status=404, headers=headers)
    return web.json_response(names, headers=headers)


async def put_kv(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    key = key_from_path(request, allow_empty=False)
    flags = uint_param(request, "flags") or 0
    cas = uint_param(request, "cas")
    for unsupported in ("acquire", "release"):
        if unsupported in request.query:
            raise HTTPProblem(400, f"?{unsupported} needs sessions, which raftkv does not support yet")
    limit = ctx.config.max_value_bytes
    if request.content_length is not None and request.content_length > limit:
        raise HTTPProblem(413, f"value too large: {request.content_length} bytes, the limit is {limit}")
    body = await request.read()
    if len(body) > limit:
        raise HTTPProblem(413, f"value too large: {len(body)} bytes, the limit is {limit}")
    forwarded = await ctx.forwarder.route(request, body, is_write=True)
    if forwarded is not None:
        return forwarded
    result = await ctx.node.propose(SetOp(key, body, flags, cas), ctx.config.request_timeout_s, len(body))
    return web.json_response(result.ok)


async def delete_kv(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    recurse = "recurse" in request.query
    key = key_from_path(request, allow_empty=recurse)
    cas = uint_param(request, "cas")
    if recurse and cas is not None:
        raise HTTPProblem(400, "Conflicting flags: cas cannot be used with recurse")
    forwarded = await ctx.forwarder.route(request, None, is_write=True)
    if forwarded is not None:
        return forwarded
    if cas == 0:  # Consul: cas=0 never deletes
        return web.json_response(False)
    result = await ctx.node.propose(DeleteOp(key, recurse, cas), ctx.config.request_timeout_s)
    return web.json_response(result.ok)
