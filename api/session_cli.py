"""`raftkv session create|list|info|renew|destroy`: Consul sessions from a shell.

Each talks to any node (--addr or RAFTKV_ADDR). Failures are one line and exit 1 (2 for bad
usage), as in api.client_cli (the client is api.cli_http).
"""

from __future__ import annotations

import argparse
import json
import sys

from api.cli_http import ClientError, addr_option, endpoint, failure, request


def register(sub) -> None:
    addr = addr_option()
    session = sub.add_parser("session", help="create, list, inspect and destroy sessions")
    verbs = session.add_subparsers(dest="verb", metavar="VERB", required=True)
    create = verbs.add_parser("create", help="create a session; prints its ID", parents=[addr])
    create.add_argument("--name", default="")
    create.add_argument("--ttl", default="", help='Go duration, 10s to 24h (e.g. "15s"); default: no TTL')
    create.add_argument("--lock-delay", default="15s", help="Go duration, at most 60s (default 15s)")
    create.add_argument("--behavior", choices=("release", "delete"), default="release",
                        help="what happens to its locks when it ends")
    create.add_argument("--node", help="the node it belongs to (default: the node that receives the request)")
    verbs.add_parser("list", help="every session", parents=[addr])
    for verb, help_line in (("info", "one session, as JSON"), ("renew", "renew a session's TTL"),
                            ("destroy", "destroy a session (its locks are released or deleted)")):
        one = verbs.add_parser(verb, help=help_line, parents=[addr])
        one.add_argument("id")
    session.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    try:
        args.addr = endpoint(args)  # with the TLS options, checked once
        if args.verb == "create":
            body = {"Name": args.name, "TTL": args.ttl, "LockDelay": args.lock_delay, "Behavior": args.behavior,
                    **({"Node": args.node} if args.node else {})}
            status, _, reply = request(args.addr, "PUT", "/v1/session/create", body=json.dumps(body).encode(),
                                       token=args.token)
            if status != 200:
                raise failure(status, reply)
            print(json.loads(reply)["ID"])
        elif args.verb == "list":
            status, _, reply = request(args.addr, "GET", "/v1/session/list", token=args.token)
            if status != 200:
                raise failure(status, reply)
            print(f"{'ID':<36}  {'NODE':<10} {'TTL':<6} {'BEHAVIOR':<8} NAME")
            for s in json.loads(reply):
                print(f"{s['ID']:<36}  {s['Node']:<10} {s['TTL'] or '-':<6} {s['Behavior']:<8} {s['Name']}")
        elif args.verb == "info":
            status, _, reply = request(args.addr, "GET", f"/v1/session/info/{args.id}", token=args.token)
            if status != 200:
                raise failure(status, reply)
            found = json.loads(reply)
            if not found:
                raise ClientError(f"no session {args.id}")
            print(json.dumps(found[0], indent=2))
        else:
            status, _, reply = request(args.addr, "PUT", f"/v1/session/{args.verb}/{args.id}", token=args.token)
            if status != 200:
                raise failure(status, reply)
            print(f"{'renewed' if args.verb == 'renew' else 'destroyed'} {args.id}")
        return 0
    except ClientError as exc:
        print(f"raftkv session {args.verb}: {exc}", file=sys.stderr)
        return 1
