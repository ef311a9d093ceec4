"""`raftkv members list|add|remove` and `raftkv leader transfer`: the operator API from a shell.

Each talks to any node (--addr or RAFTKV_ADDR); followers forward to the leader. Failures are
one line and exit 1 (2 for bad usage), as in api.client_cli (the client is api.cli_http).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from api.cli_http import ClientError, Endpoint, addr_option, endpoint
from api.cli_http import failure as _fail
from api.cli_http import request as _request

RETRY_S = 10.0  # a change sent while the leader is being replaced (503) is sent again meanwhile


def request(addr: str | Endpoint, method: str, path: str, query: dict | None = None, token: str | None = None):
    """As api.cli_http.request; a 503 with Retry-After (no leader yet, leader unreachable;
    nothing applied) is retried for up to RETRY_S."""
    deadline = time.monotonic() + RETRY_S
    while True:
        status, headers, body = _request(addr, method, path, query, token=token)
        if status != 503 or "Retry-After" not in headers or b"outcome unknown" in body \
                or time.monotonic() > deadline:
            return status, headers, body
        time.sleep(0.5)


def register(sub) -> None:
    addr = addr_option()
    members = sub.add_parser("members", help="list, add and remove cluster members")
    verbs = members.add_subparsers(dest="verb", metavar="VERB", required=True)
    verbs.add_parser("list", help="the Raft configuration: voters, learners, leader", parents=[addr])
    add = verbs.add_parser("add", help="add a running node (started with --join) as a learner", parents=[addr])
    add.add_argument("id")
    add.add_argument("raft", metavar="RAFT_HOST:PORT")
    add.add_argument("--http", metavar="HOST:PORT", help="the node's HTTP address")
    remove = verbs.add_parser("remove", help="remove a member by id (or Raft address)", parents=[addr])
    remove.add_argument("member", metavar="ID|RAFT_HOST:PORT")
    remove.add_argument("--force", action="store_true", help="even if the rest could then not form a quorum")
    members.set_defaults(_run=run_members)

    leader = sub.add_parser("leader", help="hand leadership over")
    lverbs = leader.add_subparsers(dest="verb", metavar="VERB", required=True)
    transfer = lverbs.add_parser("transfer", help="to the most caught-up voter, or --to ID", parents=[addr])
    transfer.add_argument("--to", metavar="ID")
    leader.set_defaults(_run=run_leader)


def run_members(args: argparse.Namespace) -> int:
    try:
        args.addr = endpoint(args)  # with the TLS options, checked once
        if args.verb == "list":
            status, _, body = request(args.addr, "GET", "/v1/operator/raft/configuration", token=args.token)
            if status != 200:
                raise _fail(status, body)
            print(f"{'ID':<10} {'ADDRESS':<24} {'ROLE':<8} LEADER")
            for s in json.loads(body)["Servers"]:
                role = "voter" if s["Voter"] else "learner"
                print(f"{s['ID']:<10} {s['Address']:<24} {role:<8} {'*' if s['Leader'] else ''}")
            return 0
        if args.verb == "add":
            query = {"id": args.id, "address": args.raft, **({"http": args.http} if args.http else {})}
            status, _, body = request(args.addr, "PUT", "/v1/operator/raft/peer", query, args.token)
            if status != 200:
                raise _fail(status, body)
            print(f"added {args.id} ({args.raft}) as a learner; it becomes a voter once caught up")
            return 0
        key = "address" if ":" in args.member else "id"
        query = {key: args.member, **({"force": "true"} if args.force else {})}
        status, _, body = request(args.addr, "DELETE", "/v1/operator/raft/peer", query, args.token)
        if status != 200:
            raise _fail(status, body)
        print(f"removed {args.member}")
        return 0
    except ClientError as exc:
        print(f"raftkv members {args.verb}: {exc}", file=sys.stderr)
        return 1


def run_leader(args: argparse.Namespace) -> int:
    try:
        args.addr = endpoint(args)  # with the TLS options, checked once
        status, _, body = request(args.addr, "POST", "/v1/operator/raft/transfer-leader",
                                  {"id": args.to} if args.to else None, args.token)
        if status != 200:
            raise _fail(status, body)
        status, _, body = request(args.addr, "GET", "/v1/status/leader", token=args.token)
        print(f"leader: {json.loads(body) if status == 200 else '(unknown)'}")
        return 0
    except ClientError as exc:
        print(f"raftkv leader transfer: {exc}", file=sys.stderr)
        return 1
