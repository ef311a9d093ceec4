"""Read consistency, resolved in one place.

`prepare_read` decides who answers a read and makes this node fit to answer it:

| requested            | answered by                                   | before answering          |
| -------------------- | --------------------------------------------- | ------------------------- |
| stale                | this node, even without a leader              | nothing                   |
| stale&max_stale=D    | this node if it heard from the leader within D, else the leader | nothing |
| default              | the leader (one forwarding hop)               | a read barrier            |
| consistent           | this node                                     | a read barrier            |

A read barrier is an empty entry committed through the log from this node (PySyncObj
forwards it to the leader): once it is applied here, every write acknowledged before the
read began is applied here too, and a deposed leader can never pass one. Reads that arrive
while a barrier is in flight share the next one (node.proposer.ReadBarrier).

raftkv uses no leader lease: PySyncObj's followers grant votes without leader stickiness,
which a lease needs to be safe (a node that merely missed heartbeats can win an election
while the old leader still believes its lease).
"""

from __future__ import annotations

from api.context import ApiContext
from api.errors import unavailable
from api.params import ReadConsistency, ReadParams
from api.reply import Reply


async def prepare_read(ctx: ApiContext, request, params: ReadParams, hold_s: float = 0.0) -> Reply | None:
    """None when this node serves the read (and is fit to), else the leader's forwarded response.

    `hold_s` is how long a blocking query may hold the connection (for the forwarding timeout).
    """
    node = ctx.node
    consistency = params.consistency
    if consistency is ReadConsistency.STALE:
        if node.recovering and not node.ready:
            raise unavailable("this node lost its local state and is catching up from its peers")
        if params.max_stale_s is None:
            return None
        last_contact = node.last_contact_ms
        if last_contact is not None and last_contact <= params.max_stale_s * 1000:
            return None
        return await ctx.forwarder.route(request, None, is_write=False, hold_s=hold_s)
    if consistency is ReadConsistency.DEFAULT:
        forwarded = await ctx.forwarder.route(request, None, is_write=False, hold_s=hold_s)
        if forwarded is not None:
            return forwarded
    await barrier(ctx)
    return None


async def barrier(ctx: ApiContext) -> None:
    await ctx.node.barrier(ctx.config.request_timeout_s)
