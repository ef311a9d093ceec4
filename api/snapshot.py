"""GET /v1/snapshot (download a consistent snapshot) and PUT /v1/snapshot (restore the cluster).

The file is raftkv's checkpoint format (snapshots/FORMAT.md), not Consul's gzipped tar:
Consul's tools cannot read it, and raftkv's `raftkv snapshot inspect` can.
"""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from api.context import CTX
from api.errors import HTTPProblem, bad_request
from api.forward import ForwardRequest
from api.limits import read_body
from api.reads import route_read
from node.codec import RestoreOp
from node.reads import Consistency
from snapshots import format as fmt
from snapshots.fsutil import unlink_in_background

SNAPSHOT_TIMEOUT_S = 120.0
CHUNK_BYTES = 1 << 20


async def get_snapshot(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    ctx.acl.authorize(request.headers, request.query).require_acl("write")  # Consul: snapshots need acl:write
    # Default: from the leader after a barrier, so the snapshot holds every write acknowledged
    # before the request; ?stale: this node's own newest.
    consistency = Consistency.STALE if "stale" in request.query else Consistency.DEFAULT
    forwarded = await route_read(ctx, request, consistency, hold_s=SNAPSHOT_TIMEOUT_S)
    if forwarded is not None:
        return forwarded.to_web()
    path = await ctx.node.snapshot_file(SNAPSHOT_TIMEOUT_S)
    header = fmt.read_header(path)
    return await stream_file(request, path, {"X-Consul-Index": str(header.index),
                                             "X-Raftkv-Snapshot-Keys": str(header.key_count)})


async def stream_file(request: web.Request, path: str, headers: dict[str, str]) -> web.StreamResponse:
    """Send a snapshot file as an attachment (also the console's downloads: api/ui/operations.py)."""
    # Our own link to the file: retention may delete the store's name while we stream.
    export = f"{path}.export-{id(request)}.tmp"
    os.link(path, export)
    try:
        resp = web.StreamResponse(headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{os.path.basename(path)}"',
            **headers,
        })
        resp.content_length = os.stat(export).st_size
        await resp.prepare(request)
        with await asyncio.to_thread(open, export, "rb") as f:  # the disk is read off the loop
            while block := await asyncio.to_thread(f.read, CHUNK_BYTES):
                await resp.write(block)
        await resp.write_eof()
        return resp
    finally:
        # When retention dropped the store's name meanwhile, this is the file's last link: its
        # blocks are freed off the loop.
        unlink_in_background(export)


async def put_snapshot(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    ctx.acl.authorize(request.headers, request.query).require_acl("write")
    limit = ctx.config.max_restore_bytes
    if request.content_length is not None and request.content_length > limit:
        raise HTTPProblem(413, f"snapshot too large for an online restore ({request.content_length} > {limit} bytes);"
                               " use `raftkv snapshot restore --data-dir` on stopped nodes")
    body = await read_body(request, limit, "snapshot", ctx.config.body_timeout_s)
    try:
        header, _, _ = fmt.read_bytes(body)
    except fmt.SnapshotCorrupt as exc:
        raise bad_request(f"not a usable snapshot: {exc}") from None
    forwarded = await ctx.forwarder.route(ForwardRequest.of(request), body, is_write=True)
    if forwarded is not None:
        return forwarded.to_web()
    result = await ctx.node.propose(RestoreOp(body), ctx.config.request_timeout_s * 4, len(body))
    if not result.ok:
        raise bad_request(result.error or "restore failed")
    return web.Response(status=200, headers={"X-Raftkv-Restored-Keys": str(header.key_count)})
