"""`raftkv kv get|put|delete|list` and `raftkv status`: HTTP clients of any node.

The node address comes from --addr or RAFTKV_ADDR (default 127.0.0.1:8501; see api.cli_http). Every failure
is one line on stderr and a non-zero exit: 1 for an error from the cluster, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys

from api.cli_http import ClientError, addr_option, endpoint, request
from api.cli_http import failure as _fail


def register(sub) -> None:
    kv = sub.add_parser("kv", help="get, put, delete and list keys")
    verbs = kv.add_subparsers(dest="verb", metavar="VERB", required=True)
    addr = addr_option()
    get = verbs.add_parser("get", help="print a key's value", parents=[addr])
    get.add_argument("key")
    get.add_argument("--detailed", action="store_true", help="also print flags and indexes")
    get.add_argument("--stale", action="store_true", help="read this node's copy (may lag)")
    get.add_argument("--consistent", action="store_true", help="confirm leadership through a majority first")
    put = verbs.add_parser("put", help="set a key (value from the argument, or - for stdin)", parents=[addr])
    put.add_argument("key")
    put.add_argument("value")
    put.add_argument("--flags", type=int)
    put.add_argument("--cas", type=int, help="only if the key's ModifyIndex is this (0: only if absent)")
    delete = verbs.add_parser("delete", help="delete a key, or a prefix with --recurse", parents=[addr])
    delete.add_argument("key")
    delete.add_argument("--recurse", action="store_true")
    delete.add_argument("--cas", type=int)
    lst = verbs.add_parser("list", help="list keys under a prefix", parents=[addr])
    lst.add_argument("prefix", nargs="?", default="")
    kv.set_defaults(_run=run_kv)


def run_kv(args: argparse.Namespace) -> int:
    try:
        return _run_kv(args)
    except ClientError as exc:
        print(f"raftkv kv {args.verb}: {exc}", file=sys.stderr)
        return 1


def _run_kv(args: argparse.Namespace) -> int:
    args.addr = endpoint(args)  # with the TLS options, checked once
    key_path = "/v1/kv/" + args.key if hasattr(args, "key") else "/v1/kv/" + args.prefix
    if args.verb == "get":
        query = {"stale": ""} if args.stale else {"consistent": ""} if args.consistent else {}
        status, _, body = request(args.addr, "GET", key_path, query, token=args.token)
        if status == 404:
            raise ClientError(f"key {args.key!r} not found")
        if status != 200:
            raise _fail(status, body)
        entry = json.loads(body)[0]
        value = base64.b64decode(entry["Value"]) if entry["Value"] else b""
        if args.detailed:
            print(f"Key: {entry['Key']}\nFlags: {entry['Flags']}\nCreateIndex: {entry['CreateIndex']}\n"
                  f"ModifyIndex: {entry['ModifyIndex']}\nValue: {value.decode('utf-8', 'replace')}")
        else:
            sys.stdout.buffer.write(value + (b"" if value.endswith(b"\n") else b"\n"))
        return 0
    if args.verb == "put":
        value = sys.stdin.buffer.read() if args.value == "-" else args.value.encode()
        query = {k: v for k, v in (("flags", args.flags), ("cas", args.cas)) if v is not None}
        _write(args, "PUT", key_path, query, value)
        print(f"OK: {args.key}")
        return 0
    if args.verb == "delete":
        query = {"recurse": ""} if args.recurse else {}
        if args.cas is not None:
            query["cas"] = args.cas
        _write(args, "DELETE", key_path, query)
        print(f"Deleted: {args.key}{' (recursively)' if args.recurse else ''}")
        return 0
    status, _, body = request(args.addr, "GET", key_path, {"recurse": ""}, token=args.token)
    if status == 404:
        return 0
    if status != 200:
        raise _fail(status, body)
    for entry in json.loads(body):
        print(f"{entry['Key']}\t(flags {entry['Flags']}, modified at {entry['ModifyIndex']})")
    return 0


def _write(args, method: str, path: str, query: dict, body: bytes | None = None) -> None:
    """Send a PUT or DELETE; raise ClientError unless the cluster answered `true`."""
    status, _, answer = request(args.addr, method, path, query, body, token=args.token)
    if status != 200:
        raise _fail(status, answer)
    if json.loads(answer) is not True:
        raise ClientError(f"check-and-set failed: {args.key!r} is not at ModifyIndex {args.cas}")
