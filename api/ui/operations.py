"""What the console's operations view reads that no Consul route gives: the snapshot files in
this node's folder (listed and downloaded one by one) and which keys each session holds.

Both read this node alone (its own folder; its applied state, which may trail the leader
by a moment): the page says so. Snapshots need acl:write, as GET /v1/snapshot; locks need
operator:read, and a key the token may not read is left out.
"""

from __future__ import annotations

import os

from aiohttp import web

from api.context import CTX
from api.snapshot import stream_file
from snapshots import format as fmt
from snapshots.store import NAME


async def list_snapshots(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    ctx.acl.authorize(request.headers, request.query).require_acl("write")
    out = []
    for path in ctx.node.snapshot_files():
        name = os.path.basename(path)
        match = NAME.match(name)
        try:
            st = os.stat(path)
        except OSError:
            continue  # pruned meanwhile
        out.append({"name": name, "index": int(match.group(1)) if match else None,
                    "term": int(match.group(2)) if match else None, "bytes": st.st_size, "modified": st.st_mtime})
    return web.json_response(out)


async def get_snapshot_file(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    ctx.acl.authorize(request.headers, request.query).require_acl("write")
    name = request.match_info["name"]
    # Only a name the node lists itself: the request's text never becomes a path.
    path = next((p for p in ctx.node.snapshot_files() if os.path.basename(p) == name), None)
    try:
        if path is None:
            raise FileNotFoundError(name)
        header = fmt.read_header(path)
        return await stream_file(request, path, {"X-Consul-Index": str(header.index),
                                                 "X-Raftkv-Snapshot-Keys": str(header.key_count)})
    except FileNotFoundError:  # never there, or pruned since listed
        raise web.HTTPNotFound(text=f"no snapshot named {name!r} on this node\n") from None


async def list_locks(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    authz = ctx.acl.authorize(request.headers, request.query)
    authz.require_operator("read")
    with ctx.node.read_view() as view:
        held = {sid: sorted(keys) for sid, keys in view.state.sessions.held.items()}
    return web.json_response({sid: [k for k in keys if authz.key_read(k)] for sid, keys in sorted(held.items())})
