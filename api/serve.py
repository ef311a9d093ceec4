"""`raftkv serve`: one node, composed of a RaftNode and the HTTP app, until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys
import time

from aiohttp import web

from api import cluster_secret, logs, ui_static_throwaway
from api.acl import initial as acl_initial
from api.addresses import AddressError, parse_hostport, parse_peer_list, unresolved
from api.app import make_app
from api.config import ConfigError, check_raft_timings, render, resolve
from api.context import CTX, DEFAULT_MAX_VALUE_BYTES, ApiConfig
from api.errors import ClientMistakeLogFilter
from api.fast_http import LeanProtocol
from api.join import (
    JoinError,
    ask_to_join,
    hand_over_leadership,
    parse_join_urls,
    removed_per_peers,
    voters_to_join,
)
from api.tls import TLSError, add_serve_options, node_tls_from_args
from node.engine.peer_auth import SecretError
from node.errors import StartupError
from node.membership import is_fresh
from node.proposer import MAX_BATCH_BYTES
from node.raft import NodeAddresses, RaftNode
from node.settings import JOURNAL_FILE, SNAPSHOT_DIR, RaftSettings
from node.startup import check_port_free

log = logging.getLogger("raftkv")
REMOVAL_CHECK_AFTER_S = 3.0
REQUIRED = ("id", "raft", "http", "data_dir")  # as flags, env variables or file keys (api/config.py)


def register(sub) -> None:
    p = sub.add_parser("serve", help="run one node")
    p.add_argument("--config", metavar="FILE.toml",
                   help="read settings from this TOML file (or RAFTKV_CONFIG): every flag --some-flag is the key "
                        "some_flag and the env variable RAFTKV_SOME_FLAG; flag > env > file > default")
    p.add_argument("--print-config", action="store_true",
                   help="print the effective configuration as TOML (secrets masked) and exit")
    p.add_argument("--id", help="node name, shown in logs and status (required)")
    p.add_argument("--raft", metavar="HOST:PORT", help="Raft address peers use to reach this node (required)")
    p.add_argument("--http", metavar="HOST:PORT", help="HTTP address clients and peers use (required)")
    p.add_argument("--peers", action="append", default=[], metavar="HOST:PORT[,...]",
                   help="the other nodes' Raft addresses (repeat or comma-separate)")
    p.add_argument("--data-dir", help="folder for the journal and snapshots (required)")
    p.add_argument("--join", metavar="URL[,URL]",
                   help="join a running cluster through any of its members' HTTP addresses (empty data folder); "
                        "the node catches up as a learner and becomes a voter")
    p.add_argument("--force-new-cluster", action="store_true",
                   help="after losing a majority for good: restart this node alone as the only voter of its "
                        "cluster, from its own data (writes it lacked are lost); grow it again with --join")
    p.add_argument("--raft-bind", metavar="HOST:PORT", help="listen here for Raft (default: --raft)")
    p.add_argument("--http-bind", metavar="HOST:PORT", help="listen here for HTTP (default: --http)")
    p.add_argument("--max-value-bytes", type=int, default=DEFAULT_MAX_VALUE_BYTES)
    p.add_argument("--request-timeout", type=float, default=5.0, metavar="SECONDS")
    p.add_argument("--snapshot-entries", type=int, default=RaftSettings.snapshot_min_entries,
                   help="snapshot when the log has this many entries (default %(default)s)")
    p.add_argument("--snapshot-interval", type=float, default=RaftSettings.snapshot_min_time_s, metavar="SECONDS",
                   help="or when this long has passed with changes (default %(default)s)")
    p.add_argument("--snapshot-retain", type=int, default=RaftSettings.snapshot_retain,
                   help="snapshots kept on disk (default %(default)s)")
    _add_raft_timing_flags(p)
    p.add_argument("--http-front", choices=["lean", "aiohttp"], default="lean",
                   help="lean: hot /v1/kv requests skip aiohttp (api/fast_http.py); aiohttp: all through aiohttp")
    add_serve_options(p)  # --tls-cert-file, --tls-key-file, --tls-ca-file, --tls-verify-incoming
    acl_initial.add_options(p)
    p.add_argument("--log-level", default="INFO", type=str.upper, choices=logs.LEVELS,
                   help="DEBUG adds one line per HTTP request (default %(default)s)")
    p.add_argument("--log-format", default="text", choices=logs.FORMATS,
                   help="text: readable lines; json: one JSON object per line (default %(default)s)")
    cluster_secret.add_arguments(p)
    _add_limit_flags(p)
    p.set_defaults(_run=run, _parser=p)


def _add_raft_timing_flags(p) -> None:
    raft = p.add_argument_group("Raft timing (README, \"Configuration\"; every node of a cluster alike)")
    raft.add_argument("--heartbeat-interval", type=float, default=RaftSettings.heartbeat_s, metavar="SECONDS",
                      help="the leader's heartbeat (default %(default)s)")
    raft.add_argument("--election-timeout-min", type=float, default=RaftSettings.election_min_s, metavar="SECONDS",
                      help="a follower that heard no leader for a random time between min and max stands for "
                           "election; at least 5 heartbeats, as etcd requires (default %(default)s)")
    raft.add_argument("--election-timeout-max", type=float, default=RaftSettings.election_max_s, metavar="SECONDS",
                      help="above --election-timeout-min (default %(default)s)")


def _add_limit_flags(p) -> None:
    limits = p.add_argument_group("HTTP limits (README, \"Limits\")")
    limits.add_argument("--max-conns-per-client", type=int, default=ApiConfig.max_conns_per_client, metavar="N",
                        help="open HTTP connections per client address; beyond: 429 and closed (default %(default)s)")
    limits.add_argument("--max-blocking-per-client", type=int, default=ApiConfig.max_blocking_per_client,
                        metavar="N", help="blocking queries held at once per client address; beyond: 429 "
                                          "(default %(default)s)")
    limits.add_argument("--http-head-timeout", type=float, default=ApiConfig.head_timeout_s, metavar="SECONDS",
                        help="a request head must arrive within this; else 408 and closed (default %(default)s)")
    limits.add_argument("--http-body-timeout", type=float, default=ApiConfig.body_timeout_s, metavar="SECONDS",
                        help="a request body must arrive within this of its head; else 408 (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = resolve(args._parser, args._argv, os.environ, REQUIRED)
        check_raft_timings(cfg)
    except ConfigError as exc:
        return _fail(exc, 2)
    if cfg.values.print_config:
        sys.stdout.write(render(cfg, os.environ))
        return 0
    args = cfg.values
    logs.setup(args.log_level, args.log_format)
    logging.getLogger("aiohttp.server").addFilter(ClientMistakeLogFilter())
    try:  # every mistake found here is the configuration's: exit 2, nothing started
        addresses = NodeAddresses(
            node_id=args.id,
            # Advertised addresses and peers may be names that resolve later (api/addresses.py);
            # the addresses listened on must resolve now.
            raft=parse_hostport(args.raft, cfg.label("raft"), resolve=not args.raft_bind),
            http=parse_hostport(args.http, cfg.label("http"), resolve=not args.http_bind),
            raft_bind=parse_hostport(args.raft_bind, cfg.label("raft_bind")) if args.raft_bind else None,
            peers=parse_peer_list(args.peers),
        )
        http_bind = parse_hostport(args.http_bind or args.http, cfg.label("http_bind" if args.http_bind else "http"))
        tls = node_tls_from_args(args)
        # Both ports before Raft starts: a port in use is a configuration mistake, named as such.
        check_port_free(addresses.bind, "raft", cfg.label("raft_bind" if args.raft_bind else "raft"))
        check_port_free(http_bind, "HTTP", cfg.label("http_bind" if args.http_bind else "http"))
        secrets = cluster_secret.load(args.cluster_secret_file)
        acl_policy, acl_secret = acl_initial.settings(args)
        refusal = cluster_secret.refusal(addresses.bind, secrets, args.insecure_raft) or \
            cluster_secret.http_refusal(http_bind, acl_policy, args.tls_verify_incoming, args.insecure_http)
        if refusal:
            return _fail(refusal, 2)
    except (ValueError, TLSError, StartupError, SecretError) as exc:  # AddressError is a ValueError
        return _fail(exc, 2)
    for peer in unresolved(addresses.other_peers()):
        log.warning("peer %s does not resolve yet; Raft keeps trying to reach it", peer)
    peer_ssl = tls.peer if tls else None  # every node of a cluster serves the same scheme
    # The largest entry: an online restore, a transaction, or a full write batch plus one value.
    max_entry = max(ApiConfig.max_restore_bytes, ApiConfig.max_txn_bytes, MAX_BATCH_BYTES + args.max_value_bytes)
    settings = RaftSettings(heartbeat_s=args.heartbeat_interval, election_min_s=args.election_timeout_min,
                            election_max_s=args.election_timeout_max,
                            snapshot_min_entries=args.snapshot_entries, snapshot_min_time_s=args.snapshot_interval,
                            snapshot_retain=args.snapshot_retain, max_entry_bytes=max_entry,
                            cluster_secrets=secrets)
    join_urls: list[str] = []
    try:
        join_voters = None
        if args.join:
            join_urls = parse_join_urls(args.join, "https" if tls else "http")
            if is_fresh(args.data_dir, JOURNAL_FILE, SNAPSHOT_DIR):
                join_voters = voters_to_join(join_urls, addresses, args.request_timeout, peer_ssl,
                                             acl_initial.own_token_headers(acl_secret))
        node = RaftNode(addresses, args.data_dir, settings, join_voters=join_voters,  # main thread: see RaftNode
                        force_new_cluster=args.force_new_cluster)
    except (StartupError, JoinError, AddressError) as exc:
        return _fail(exc, 1)
    try:
        node.admit()
    except StartupError as exc:
        status = _fail(exc, 1)
        node.close()
        return status
    if not node.wait_local_replay(timeout_s=600):
        log.warning("local replay did not finish within 600 s; serving anyway")
    config = ApiConfig(max_value_bytes=args.max_value_bytes, request_timeout_s=args.request_timeout,
                       peer_ssl=peer_ssl, acl_default_policy=acl_policy,
                       max_conns_per_client=args.max_conns_per_client,
                       max_blocking_per_client=args.max_blocking_per_client,
                       head_timeout_s=args.http_head_timeout, body_timeout_s=args.http_body_timeout)
    try:
        return _run_loop(_serve(node, config, http_bind, lean=args.http_front == "lean",
                                join_urls=join_urls if node.standing.learner else [],
                                server_ssl=tls.server if tls else None, acl_secret=acl_secret))
    finally:
        node.close()


def _fail(problem: object, status: int) -> int:
    """Say why serve cannot start, in one line on stderr (a JSON line once JSON logs are on)."""
    if logs.json_on():
        log.error("raftkv serve: %s", problem)
    else:
        print(f"raftkv serve: {problem}", file=sys.stderr)
    return status


def _run_loop(main) -> int:
    """uvloop when installed (the `load` extra brings it): a faster loop for the same code."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def _serve(node: RaftNode, config: ApiConfig, http_bind: str, lean: bool = True,
                 join_urls: list[str] | None = None, server_ssl: ssl.SSLContext | None = None,
                 acl_secret: str | None = None) -> int:
    app = make_app(node, config)
    ui_static_throwaway.register(app)  # THROWAWAY (ui-kv branch): the console's own serving replaces it
    runner = web.AppRunner(app, handle_signals=False, access_log=logs.HTTP_LOG, access_log_class=logs.AiohttpRequestLog)
    await runner.setup()
    host, _, port = http_bind.rpartition(":")
    lean_server = None
    try:
        # Both fronts start every connection in LeanProtocol, which admits it (connections per
        # client) and bounds its first head; with lean=False it goes to aiohttp at that head.
        # A TLS handshake gets the head's time too (asyncio's default is 60 s).
        ctx = app[CTX]
        lean_server = await asyncio.get_running_loop().create_server(
            lambda: LeanProtocol(ctx, runner.server, lean), host, int(port), reuse_address=True, ssl=server_ssl,
            ssl_handshake_timeout=config.head_timeout_s if server_ssl else None)
    except OSError as exc:
        await runner.cleanup()
        return _fail(f"cannot listen on HTTP address {http_bind}: {exc.strerror}", 1)
    a = node.addresses
    log.info("node %s serving %s on %s, Raft on %s (%s), peers %s", a.node_id, "HTTPS" if server_ssl else "HTTP",
             http_bind, a.raft,
             "authenticated and encrypted" if node.settings.cluster_secrets else "plain: no cluster secret",
             ",".join(a.peers))
    if config.acl_default_policy:
        log.info("ACLs on, default policy %s", config.acl_default_policy)
    stop = asyncio.Event()
    own_token = acl_initial.own_token_headers(acl_secret)  # for this node's calls to its peers
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    background = [asyncio.create_task(node.maintain_membership(stop)),
                  asyncio.create_task(node.report_unreachable_peers(stop)),
                  asyncio.create_task(_stop_when_removed(node, stop, config.peer_ssl, own_token))]
    if join_urls:
        background.append(asyncio.create_task(ask_to_join(node, join_urls, stop, config.peer_ssl, own_token)))
    if acl_secret:
        background.append(asyncio.create_task(
            acl_initial.keep_initial_management(node, acl_secret, stop, config.request_timeout_s)))
    await stop.wait()
    log.info("node %s stopping", a.node_id)
    if lean_server is not None:
        lean_server.close()  # stop accepting; connections handed to aiohttp close with the runner
    for site in list(runner.sites):
        await site.stop()
    if node.is_leader and not node.removed:
        await hand_over_leadership(node)
    for task in background:
        task.cancel()
    await runner.cleanup()
    return 0


async def _stop_when_removed(node: RaftNode, stop: asyncio.Event, peer_ssl: ssl.SSLContext | None = None,
                             headers: dict | None = None) -> None:
    """Stop once this node is removed. The leader says so when it applies the removal; if that
    word is lost (or the node was down then), a node without a leader for a few seconds asks
    the members it knows whether their configuration, newer than ours, still has it."""
    leaderless_since = None
    while not stop.is_set():
        if node.removed:
            log.warning("node %s was removed from the cluster; stopping", node.addresses.node_id)
            stop.set()
            return
        if node.leader is None and not node.standing.learner:
            leaderless_since = leaderless_since or time.monotonic()
            if time.monotonic() - leaderless_since > REMOVAL_CHECK_AFTER_S:
                leaderless_since = time.monotonic()
                if await removed_per_peers(node, peer_ssl, headers):
                    node.mark_removed("the other members' configuration no longer has it")
        else:
            leaderless_since = None
        # A removal, a new leader or its loss fires this; the bound keeps the leaderless check going.
        await node.wait_for_cluster_change(1.0)
