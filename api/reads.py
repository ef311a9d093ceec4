"""Reads: who answers is the node's decision (node.reads, `Node.prepare_read`); this module
carries it out over HTTP, forwarding to the leader when the node says the leader must answer.
"""

from __future__ import annotations

import time

from api.context import ApiContext
from api.errors import unavailable
from api.forward import ForwardRequest
from api.reply import Reply
from node.reads import Consistency, ReadRoute


async def route_read(ctx: ApiContext, request, consistency: Consistency,
                     max_stale_s: float | None = None, hold_s: float = 0.0) -> Reply | None:
    """None when this node answers the read (and is now fit to), else the leader's answer.
    `request` is aiohttp's or the lean front's; only a ForwardRequest of it leaves this node.

    `hold_s` is how long a blocking query may hold the connection (for the forwarding timeout).
    """
    timeout_s = ctx.config.request_timeout_s
    deadline = time.monotonic() + timeout_s
    while True:
        if await ctx.node.prepare_read(consistency, max_stale_s, timeout_s) is ReadRoute.LOCAL:
            return None
        forwarded = await ctx.forwarder.route(ForwardRequest.of(request), None, is_write=False, hold_s=hold_s)
        if forwarded is not None:
            return forwarded
        # This node became the leader between the two steps: decide again (a barrier now).
        if time.monotonic() > deadline:
            raise unavailable("the leader kept changing; no read was served")


async def reverify(ctx: ApiContext, consistency: Consistency) -> None:
    """A blocking query's re-check after a wake-up: strong reads pass a new barrier here."""
    if consistency is not Consistency.STALE:
        await ctx.node.prepare_read(Consistency.CONSISTENT, None, ctx.config.request_timeout_s)
