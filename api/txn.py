"""PUT /v1/txn: Consul's transaction format for KV operations, applied atomically in one log entry."""

from __future__ import annotations

import base64
import binascii
import json

from aiohttp import web

from api.acl.authz import Authorizer
from api.context import CTX
from api.errors import HTTPProblem, bad_request
from api.kv import entry_json
from api.limits import read_body
from api.params import UINT64_MAX, parse_key
from node.codec import TXN_VERBS, TxnItem, TxnOp
from node.reads import Consistency

MAX_TXN_OPS = 128  # Consul's current limit
_TREE_VERBS = {"get-tree", "delete-tree"}


async def put_txn(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await read_body(request, ctx.config.max_txn_bytes, "transaction", ctx.config.body_timeout_s)
    items, value_bytes = parse_txn(body, ctx.config.max_value_bytes)
    authz = ctx.acl.authorize(request.headers, request.query)
    denied = txn_acl_errors(authz, items)
    if denied:  # Consul's pre-check: every refused op listed, nothing applied
        return web.json_response({"Results": None, "Errors": denied}, status=409)
    delayed = await lock_delay_errors(ctx, items)
    if delayed:
        return web.json_response({"Results": None, "Errors": delayed}, status=409)
    result = await ctx.node.propose(TxnOp(tuple(items)), ctx.config.request_timeout_s, value_bytes)
    if not result.ok:
        errors = [{"OpIndex": i, "What": what} for i, what in result.errors] or [
            {"OpIndex": 0, "What": result.error or "transaction failed"}
        ]
        return web.json_response({"Results": None, "Errors": errors}, status=409)
    results = []
    for key, entry, include_value in result.results:
        if not authz.key_read(key):  # Consul filters results down to what the token may read
            continue
        doc = entry_json(key, entry)
        if not include_value:
            doc["Value"] = None
        results.append({"KV": doc})
    return web.json_response({"Results": results, "Errors": None})


def txn_acl_errors(authz: Authorizer, items: list[TxnItem]) -> list[dict]:
    """Consul's per-op ACL pre-check (kvsPreApply): delete-tree needs write on the whole
    prefix, get and get-tree nothing (their results are filtered), check-index and check-session read, every
    other verb write on its key."""
    errors = []
    for i, item in enumerate(items):
        try:
            if item.verb == "delete-tree":
                authz.require_key_prefix_write(item.key)
            elif item.verb in ("check-index", "check-session"):
                authz.require_key(item.key, "read")
            elif item.verb not in ("get", "get-tree"):
                authz.require_key(item.key, "write")
        except HTTPProblem as exc:
            errors.append({"OpIndex": i, "What": exc.reason})
    return errors


async def lock_delay_errors(ctx, items: list[TxnItem]) -> list[dict]:
    """Consul's pre-check of lock verbs against lock-delay (see api.kv._lock)."""
    locks = [(i, item.key) for i, item in enumerate(items) if item.verb == "lock"]
    if not locks:
        return []
    await ctx.node.prepare_read(Consistency.CONSISTENT, None, ctx.config.request_timeout_s)
    return [{"OpIndex": i, "What": f'failed to lock key "{key}" due to lock delay'}
            for i, key in locks if ctx.node.lock_delay_left_s(key) > 0]


def parse_txn(body: bytes, max_value_bytes: int) -> tuple[list[TxnItem], int]:
    try:
        ops = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"Failed to parse body: {exc}") from None
    if not isinstance(ops, list):
        raise bad_request("Failed to parse body: expected a JSON array of operations")
    if len(ops) > MAX_TXN_OPS:
        raise HTTPProblem(413, f"Transaction contains too many operations ({len(ops)} > {MAX_TXN_OPS})")
    items, total = [], 0
    for i, op in enumerate(ops):
        kv = op.get("KV") if isinstance(op, dict) else None
        if not isinstance(kv, dict):
            raise bad_request(f"operation {i}: only KV operations are supported")
        item = _parse_item(i, kv, max_value_bytes)
        total += len(item.value)
        items.append(item)
    return items, total


def _parse_item(i: int, kv: dict, max_value_bytes: int) -> TxnItem:
    verb = kv.get("Verb")
    if not isinstance(verb, str) or verb not in TXN_VERBS:  # a list or an object is not hashable
        raise bad_request(f"operation {i}: unsupported KV verb {verb!r}")
    key = kv.get("Key", "")
    if not isinstance(key, str) or (not key and verb not in _TREE_VERBS):
        raise bad_request(f"operation {i}: missing key name")
    try:  # the same key rules as /v1/kv (a lone surrogate from JSON is not UTF-8: it was a 500)
        parse_key(key, allow_empty=True)
    except HTTPProblem as exc:
        raise bad_request(f"operation {i}: {exc.reason}") from None
    raw = kv.get("Value")  # null (or absent) is empty, as Go decodes it; any other non-string is an error
    try:
        if raw is not None and not isinstance(raw, str):
            raise TypeError
        value = base64.b64decode(raw, validate=True) if raw else b""
    except (binascii.Error, TypeError, ValueError):
        raise bad_request(f"operation {i}: Value is not valid base64") from None
    if len(value) > max_value_bytes:
        raise HTTPProblem(413, f"operation {i}: value for key {key!r} is too large ({len(value)} > {max_value_bytes})")
    numbers = []
    for name in ("Flags", "Index"):
        n = kv.get(name)
        n = 0 if n is None else n  # `or 0` would also take {}, "" and false for 0
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= UINT64_MAX:
            raise bad_request(f"operation {i}: {name} must be an unsigned integer")
        numbers.append(n)
    session = kv.get("Session")
    if session is not None and not isinstance(session, str):
        raise bad_request(f"operation {i}: Session must be a string")
    return TxnItem(verb, key, value, numbers[0], numbers[1], session or "")
