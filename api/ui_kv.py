"""The console's KV search: `GET /v1/raftkv/ui/search`, a bounded scan under a key prefix.

Consul has no search, and `?recurse` answers every value under a prefix at once, which on a
large store is megabytes the browser would then filter itself. This scan stops at whichever
bound comes first: `limit` matches, `max_keys` keys looked at, `max_bytes` of values looked
into (the scan holds the node's read lock, so its work is bounded too), and says so
(`Truncated`, `StoppedBy`) with `NextKey` to resume from (`after=`). Keys the token may not
read are skipped unseen, as Consul filters a listing: they neither match nor count as bytes.
Read consistency as for /v1/kv (`?stale`, `?consistent`; by default the leader answers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from api.context import CTX
from api.errors import bad_request
from api.params import parse_key, read_params, uint_param
from api.reads import route_read

DEFAULT_LIMIT, MAX_LIMIT = 100, 1000  # matches returned
MAX_KEYS = 10_000  # keys looked at in one request
MAX_BYTES = 16 * 1024 * 1024  # bytes of values looked into in one request
MAX_CONTAINS_BYTES = 1024
CHUNK_KEYS = 256  # keys looked at per hold of the read lock


def _bounded(query, name: str, default: int, low: int, high: int) -> int:
    value = uint_param(query, name)
    if value is None:
        return default
    if not low <= value <= high:
        raise bad_request(f"invalid {name}: {value} is out of range ({low} to {high})")
    return value


def parse_search(query) -> tuple[str, bytes | None, str | None, int, int, int]:
    """(prefix, contains, after, limit, max_keys, max_bytes) from the query; 400 with one line."""
    prefix = parse_key(query.get("prefix", ""), allow_empty=True)
    after = query.get("after") or None
    if after is not None:
        parse_key(after, allow_empty=False)
    contains = None
    if query.get("contains"):
        contains = query["contains"].encode("utf-8", "surrogatepass")
        if len(contains) > MAX_CONTAINS_BYTES:
            raise bad_request(f"invalid contains: {len(contains)} bytes, the limit is {MAX_CONTAINS_BYTES}")
    limit = _bounded(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    max_keys = _bounded(query, "max_keys", MAX_KEYS, 1, MAX_KEYS)
    max_bytes = _bounded(query, "max_bytes", MAX_BYTES, 1, MAX_BYTES)
    return prefix, contains, after, limit, max_keys, max_bytes


class _Scan:
    """One search's progress, advanced a chunk of keys at a time (see `search`)."""

    def __init__(self, contains: bytes | None, after: str | None, limit: int, max_keys: int, max_bytes: int,
                 may_read: Callable[[str], bool] | None) -> None:
        self.contains, self.last, self.may_read = contains, after, may_read
        self.limit, self.max_keys, self.max_bytes = limit, max_keys, max_bytes
        self.matches: list[dict] = []
        self.scanned = self.scanned_bytes = 0
        self.stopped_by: str | None = None

    def step(self, view, prefix: str, chunk: int) -> bool:
        """Look at up to `chunk` more keys under the view's lock; True when the scan is over."""
        for n, (key, entry) in enumerate(view.iter_items(prefix, self.last)):
            if len(self.matches) >= self.limit:
                self.stopped_by = "limit"
            elif self.scanned >= self.max_keys:
                self.stopped_by = "max_keys"
            elif self.contains is not None and self.scanned_bytes and \
                    self.scanned_bytes + len(entry.value) > self.max_bytes:
                self.stopped_by = "max_bytes"  # the first value is always looked into, so a scan moves on
            if self.stopped_by:
                return True
            if n == chunk:
                return False  # more to look at, after a turn of the event loop
            self.scanned, self.last = self.scanned + 1, key
            if self.may_read is not None and not self.may_read(key):
                continue
            if self.contains is not None:
                self.scanned_bytes += len(entry.value)
                if self.contains not in entry.value:
                    continue
            self.matches.append({"Key": key, "Flags": entry.flags, "ModifyIndex": entry.modify_index,
                                 "Size": len(entry.value), "Session": entry.session})
        return True


async def search(request: web.Request) -> web.Response:
    """The scan takes the node's read lock for CHUNK_KEYS keys at a time and lets the event loop
    run between chunks: a search of the whole bound would otherwise stall this node's other
    requests, and its applies, for as long as it runs. Each chunk reads one state; the whole
    scan may see writes made while it runs (each key as it was when its chunk read it)."""
    ctx = request.app[CTX]
    params = read_params(request.query)
    prefix, contains, after, limit, max_keys, max_bytes = parse_search(request.query)
    authz = ctx.acl.authorize(request.headers, request.query)
    forwarded = await route_read(ctx, request, params.consistency, params.max_stale_s)
    if forwarded is not None:
        return forwarded.to_web()
    scan = _Scan(contains, after, limit, max_keys, max_bytes, authz.key_read if ctx.acl.enabled else None)
    while True:
        with ctx.node.read_view() as view:
            if scan.step(view, prefix, CHUNK_KEYS):
                break
        await asyncio.sleep(0)
    doc = {"Matches": scan.matches, "ScannedKeys": scan.scanned, "ScannedBytes": scan.scanned_bytes,
           "Truncated": scan.stopped_by is not None, "StoppedBy": scan.stopped_by,
           "NextKey": scan.last if scan.stopped_by else None}
    return web.json_response(doc)


def register(app: web.Application) -> None:
    app.router.add_get("/v1/raftkv/ui/search", search)
