"""`raftkv up`: a local cluster in one command, for a first run and for experiments.

Starts N `raftkv serve` processes on 127.0.0.1 with their data under one folder, prefixes
each node's log lines with its id, prints the HTTP addresses and the leader, and stops every
node on Ctrl-C or SIGTERM. The layout (ids, ports) is saved in `<data-dir>/cluster.json`, so
running it again brings the same cluster and data back.

`raftkv up --add` (in a second terminal, same --data-dir) starts one more node on the next
free ports and joins it to the running cluster (`serve --join`); it is recorded in the layout,
so the next `raftkv up` starts it too. A member removed meanwhile (`raftkv members remove`)
refuses to start, which `up` reports and goes on without.

`raftkv up --tls` serves HTTPS: a throwaway CA and one certificate per node are made in
`<data-dir>/tls` (keys mode 0600) and kept, so later runs (and `--add`) stay on https.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

from api.pki import Pki
from node.engine.peer_auth import new_secret
from snapshots.fsutil import write_atomic

LAYOUT_FILE = "cluster.json"
SECRET_FILE = "cluster.secret"  # the nodes' Raft secret (api/cluster_secret.py), mode 0600
HOST = "127.0.0.1"
TLS_DIR = "tls"  # under the data folder: the CA and the nodes' certificates (api/pki.py)


def register(sub) -> None:
    p = sub.add_parser("up", help="run a local cluster in one command")
    p.add_argument("--nodes", type=int, help="cluster size: 1, 3, 5 or 7 (default 3, or the saved layout's)")
    p.add_argument("--add", action="store_true", help="start one more node and join it to the running cluster")
    p.add_argument("--data-dir", default="./raftkv-data", help="folder for every node's data")
    p.add_argument("--http-port", type=int, default=8501, help="first node's HTTP port; the others follow")
    p.add_argument("--raft-port", type=int, default=7001, help="first node's Raft port; the others follow")
    p.add_argument("--tls", action="store_true",
                   help="serve HTTPS with a throwaway CA made in <data-dir>/tls (kept: later runs stay on https)")
    p.add_argument("--acl", choices=["allow", "deny"], help="enforce ACL tokens with this default policy")
    p.set_defaults(_run=run)


class UpError(Exception):
    pass


def load_or_create_layout(data_dir: str, nodes: int, http_port: int, raft_port: int) -> list[dict]:
    path = os.path.join(data_dir, LAYOUT_FILE)
    if os.path.exists(path):
        with open(path) as f:
            layout = json.load(f)["nodes"]
        if nodes is not None and len(layout) != nodes:
            raise UpError(f"{data_dir} holds a {len(layout)}-node cluster; run with --nodes {len(layout)} "
                          "or use another --data-dir")
        return layout
    nodes = 3 if nodes is None else nodes
    if nodes not in (1, 3, 5, 7):
        raise UpError("--nodes must be 1, 3, 5 or 7 (an even size tolerates no more failures than the odd one below)")
    layout = [
        {"id": f"n{i + 1}", "http": f"{HOST}:{http_port + i}", "raft": f"{HOST}:{raft_port + i}"}
        for i in range(nodes)
    ]
    try:
        os.makedirs(data_dir, exist_ok=True)
        write_atomic(path, json.dumps({"nodes": layout}, indent=2).encode())
    except OSError as exc:
        raise UpError(f"cannot write to {data_dir}: {exc.strerror}") from None
    return layout


def ensure_secret(data_dir: str) -> str:
    """The cluster's secret file, made on the first run: Raft traffic is authenticated from the start."""
    path = os.path.join(data_dir, SECRET_FILE)
    if not os.path.exists(path):
        try:
            write_atomic(path, (new_secret() + "\n").encode(), mode=0o600)
        except OSError as exc:
            raise UpError(f"cannot write {path}: {exc.strerror}") from None
    return path


def _port_free(addr: str) -> bool:
    host, _, port = addr.rpartition(":")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
            return True
        except OSError:
            return False


def _pump(prefix: str, stream) -> None:
    for line in iter(stream.readline, b""):
        _say(f"[{prefix}] {line.decode('utf-8', 'replace')}", end="")


def _say(text: str, end: str = "\n") -> None:
    """Print, surviving a closed stdout (`raftkv up | tee` after Ctrl-C, a closed terminal):
    the nodes must still be stopped after nobody reads our output."""
    try:
        sys.stdout.write(text + end)
        sys.stdout.flush()
    except (BrokenPipeError, OSError):
        pass


def _leader_http(layout: list[dict], tls: ssl.SSLContext | None = None) -> str | None:
    by_raft = {n["raft"]: n for n in layout}
    for n in layout:
        try:
            with urllib.request.urlopen(f"{'https' if tls else 'http'}://{n['http']}/v1/status/leader", timeout=1,
                                        context=tls) as resp:
                leader = json.loads(resp.read())
            if leader in by_raft:
                return by_raft[leader]["id"]
        except (OSError, ValueError):
            continue
    return None


def add_node(data_dir: str) -> tuple[list[dict], dict]:
    """Record one more node in the saved layout, on the next free ports; (layout, new node)."""
    path = os.path.join(data_dir, LAYOUT_FILE)
    if not os.path.exists(path):
        raise UpError(f"no cluster in {data_dir}; start one with raftkv up first")
    with open(path) as f:
        layout = json.load(f)["nodes"]
    number = max(int(n["id"][1:]) for n in layout) + 1
    http_port = max(int(n["http"].rpartition(":")[2]) for n in layout) + 1
    raft_port = max(int(n["raft"].rpartition(":")[2]) for n in layout) + 1
    while not (_port_free(f"{HOST}:{http_port}") and _port_free(f"{HOST}:{raft_port}")):
        http_port, raft_port = http_port + 1, raft_port + 1
    new = {"id": f"n{number}", "http": f"{HOST}:{http_port}", "raft": f"{HOST}:{raft_port}", "joined": True}
    layout.append(new)
    write_atomic(path, json.dumps({"nodes": layout}, indent=2).encode())
    return layout, new


def _tls_material(tls_dir: str, layout: list[dict]) -> str:
    """The CA in `tls_dir` and a certificate for every node of the layout (each made once); the CA's path."""
    pki = Pki(tls_dir, name="raftkv up CA", days=825)
    for n in layout:
        if not os.path.exists(os.path.join(tls_dir, f"{n['id']}-key.pem")):
            pki.issue(n["id"], (n["http"].rpartition(":")[0], "localhost"))
    return pki.ca


def _tls_args(tls_dir: str, n: dict) -> list[str]:
    return ["--tls-cert-file", os.path.join(tls_dir, f"{n['id']}.pem"),
            "--tls-key-file", os.path.join(tls_dir, f"{n['id']}-key.pem"),
            "--tls-ca-file", os.path.join(tls_dir, "ca.pem")]


def _serve_command(data_dir: str, n: dict, layout: list[dict], acl: str | None = None) -> list[str]:
    peers = ",".join(m["raft"] for m in layout if m is not n)
    cmd = [sys.executable, "-m", "api.cli", "serve", "--id", n["id"], "--raft", n["raft"], "--http", n["http"],
           "--data-dir", os.path.join(data_dir, n["id"]), "--cluster-secret-file", os.path.join(data_dir, SECRET_FILE),
           ] + (["--peers", peers] if peers else [])
    if n.get("joined"):  # ignored by serve once its data folder holds its membership
        cmd += ["--join", ",".join(m["http"] for m in layout if m is not n)]  # scheme-less: the node's own
    tls_dir = os.path.join(data_dir, TLS_DIR)
    if os.path.isdir(tls_dir):
        cmd += _tls_args(tls_dir, n)
    if acl:
        cmd += ["--acl", acl]
    return cmd


def run(args) -> int:
    data_dir = os.path.abspath(args.data_dir)
    try:
        if args.add:
            layout, new = add_node(data_dir)
            starting = [new]
        else:
            layout = load_or_create_layout(data_dir, args.nodes, args.http_port, args.raft_port)
            starting = layout
        ensure_secret(data_dir)
        for n in starting:
            for addr in (n["http"], n["raft"]):
                if not _port_free(addr):
                    raise UpError(f"port {addr} is in use (another raftkv up?); pick --http-port/--raft-port")
        tls_dir = os.path.join(data_dir, TLS_DIR)
        ca = _tls_material(tls_dir, layout) if args.tls or os.path.isdir(tls_dir) else None
    except (UpError, OSError, ValueError, KeyError) as exc:
        print(f"raftkv up: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    # SIGHUP too: a closed terminal must not leave the nodes running (they are in sessions of
    # their own, so that Ctrl-C reaches only us and we stop them in order).
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    procs: dict[str, subprocess.Popen] = {}
    for n in starting:
        proc = subprocess.Popen(_serve_command(data_dir, n, layout, args.acl), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        procs[n["id"]] = proc
        threading.Thread(target=_pump, args=(n["id"], proc.stdout), daemon=True).start()
    print(f"raftkv up: {'adding' if args.add else 'starting'} {len(starting)} node(s), data in {data_dir}")
    scheme = "https" if ca else "http"
    for n in starting:
        print(f"  {n['id']}  {scheme}://{n['http']}  (raft {n['raft']})")
    if ca:
        print(f"  TLS: the nodes' CA is {ca}")
    print(f"  web console: {scheme}://{starting[0]['http']}/ui/ (on every node)")
    sys.stdout.flush()
    started = time.monotonic()
    leader_ssl = ssl.create_default_context(cafile=ca) if ca else None
    announced = None
    exit_code = 0
    reported: set[str] = set()  # nodes whose exit was already told
    while not stop.wait(0.2):
        for node_id, proc in procs.items():
            if proc.poll() is not None and node_id not in reported:
                reported.add(node_id)
                _say(f"raftkv up: node {node_id} exited with code {proc.returncode}")
                if all(p.poll() is not None for p in procs.values()):
                    stop.set()
                    exit_code = 1
        if announced is None and time.monotonic() - started < 60:
            leader = _leader_http(layout, leader_ssl)
            if leader:
                announced = leader
                curl = f"curl --cacert {ca}" if ca else "curl"
                _say(f"raftkv up: leader is {leader}; ready in {time.monotonic() - started:.1f}s. "
                     f"Try: {curl} -X PUT --data-binary hello {scheme}://{layout[0]['http']}/v1/kv/greeting")
                if args.acl:
                    _say(f"raftkv up: ACLs are on (default policy {args.acl}). Bootstrap once: "
                         f"raftkv acl bootstrap --addr {scheme}://{layout[0]['http']}  (keep the SecretID it prints; "
                         "then pass it as --token or RAFTKV_HTTP_TOKEN)")
    _say("raftkv up: stopping nodes")
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in procs.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return exit_code
