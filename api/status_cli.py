"""`raftkv status`: the cluster at a glance, as a table, as JSON, or refreshed in place.

Asks the given node for its members, then every member for its own view
(/v1/raftkv/status); api/cluster_view.py makes the rows (lag, health).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from api.cli_http import ClientError, addr_option, endpoint, request
from api.cli_http import failure as _fail
from api.cluster_view import combine, members_of


def register(sub) -> None:
    status = sub.add_parser("status", help="show the cluster's nodes, leader and indexes", parents=[addr_option()])
    status.add_argument("--json", action="store_true", help="print the nodes as one JSON document")
    status.add_argument("--watch", type=float, nargs="?", const=1.0, metavar="SECONDS",
                        help="refresh in place every SECONDS (default 1) until Ctrl-C")
    status.add_argument("--count", type=int, metavar="N", help="with --watch: stop after N refreshes")
    status.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    if args.watch is not None and args.watch <= 0 or args.count is not None and args.count <= 0:
        print("raftkv status: --watch and --count must be positive", file=sys.stderr)
        return 2
    try:
        args.addr = endpoint(args)  # with the TLS options, checked once
        shown = 0
        while True:
            view = cluster_view(args)
            text = json.dumps(view, indent=2) if args.json else table(view)
            if args.watch is not None and sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[J")  # in place: home, clear
            print(text + (f"\n(every {args.watch:g}s, Ctrl-C to stop)" if args.watch is not None else ""), flush=True)
            shown += 1
            if args.watch is None or (args.count is not None and shown >= args.count):
                return 0
            time.sleep(args.watch)
    except ClientError as exc:
        print(f"raftkv status: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def cluster_view(args: argparse.Namespace) -> dict:
    status, _, body = request(args.addr, "GET", "/v1/raftkv/status", token=args.token)
    if status != 200:
        raise _fail(status, body)
    here = json.loads(body)
    statuses = []
    for member in members_of(here):
        try:
            code, _, mbody = request(args.addr.peer(member["http"]), "GET", "/v1/raftkv/status", token=args.token)
            statuses.append((member, json.loads(mbody) if code == 200 else None))
        except ClientError:
            statuses.append((member, None))
    return combine(here, statuses)


def table(view: dict) -> str:
    lines = [f"leader: {view['leader'] or '(none)'}  term: {view['term']}",
             f"{'ID':<8} {'HTTP':<22} {'RAFT':<22} {'STATE':<10} {'TERM':>5} {'COMMIT':>8} {'APPLIED':>8} "
             f"{'LAG':>5} {'CONTACT':>8} {'KEYS':>8}  HEALTH"]
    for n in view["nodes"]:
        if n["state"] == "down":
            lines.append(f"{n['id']:<8} {n['http']:<22} {n['raft']:<22} {'down':<10}")
            continue
        contact = "-" if n["last_contact_ms"] is None else f"{n['last_contact_ms']}ms"
        lines.append(f"{n['id']:<8} {n['http']:<22} {n['raft']:<22} {n['state']:<10} {n['term']:>5} "
                     f"{n['commit_index']:>8} {n['applied_index']:>8} {n['lag']:>5} {contact:>8} {n['keys']:>8}  "
                     f"{n['health']}")
    return "\n".join(lines)
