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

from aiohttp import web

from api.context import CTX
from api.errors import bad_request
from api.params import parse_key, read_params, uint_param
from api.reads import route_read

DEFAULT_LIMIT, MAX_LIMIT = 100, 1000  # matches returned
MAX_KEYS = 10_000  # keys looked at in one request
MAX_BYTES = 16 * 1024 * 1024  # bytes of values looked into in one request
MAX_CONTAINS_BYTES = 1024


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


async def search(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    params = read_params(request.query)
    prefix, contains, after, limit, max_keys, max_bytes = parse_search(request.query)
    authz = ctx.acl.authorize(request.headers, request.query)
    forwarded = await route_read(ctx, request, params.consistency, params.max_stale_s)
    if forwarded is not None:
        return forwarded.to_web()
    matches: list[dict] = []
    scanned = scanned_bytes = 0
    stopped_by, last = None, None
    with ctx.node.read_view() as view:
        for key, entry in view.iter_items(prefix, after):
            if len(matches) >= limit:
                stopped_by = "limit"
            elif scanned >= max_keys:
                stopped_by = "max_keys"
            elif contains is not None and scanned_bytes + len(entry.value) > max_bytes and scanned_bytes:
                stopped_by = "max_bytes"  # the first value is always looked into, so a scan moves on
            if stopped_by:
                break
            scanned, last = scanned + 1, key
            if ctx.acl.enabled and not authz.key_read(key):
                continue
            if contains is not None:
                scanned_bytes += len(entry.value)
                if contains not in entry.value:
                    continue
            matches.append({"Key": key, "Flags": entry.flags, "ModifyIndex": entry.modify_index,
                            "Size": len(entry.value), "Session": entry.session})
    doc = {"Matches": matches, "ScannedKeys": scanned, "ScannedBytes": scanned_bytes,
           "Truncated": stopped_by is not None, "StoppedBy": stopped_by,
           "NextKey": last if stopped_by else None}
    return web.json_response(doc)


def register(app: web.Application) -> None:
    app.router.add_get("/v1/raftkv/ui/search", search)
