"""`raftkv up`: a local cluster in one command, for a first run and for experiments.

Starts N `raftkv serve` processes on 127.0.0.1 with their data under one folder, prefixes
each node's log lines with its id, prints the HTTP addresses and the leader, and stops every
node on Ctrl-C or SIGTERM. The layout (ids, ports) is saved in `<data-dir>/cluster.json`, so
running it again brings the same cluster and data back.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from snapshots.fsutil import write_atomic

LAYOUT_FILE = "cluster.json"
HOST = "127.0.0.1"


def register(sub) -> None:
    p = sub.add_parser("up", help="run a local cluster in one command")
    p.add_argument("--nodes", type=int, default=3, help="cluster size (default 3)")
    p.add_argument("--data-dir", default="./raftkv-data", help="folder for every node's data")
    p.add_argument("--http-port", type=int, default=8501, help="first node's HTTP port; the others follow")
    p.add_argument("--raft-port", type=int, default=7001, help="first node's Raft port; the others follow")
    p.set_defaults(_run=run)


class UpError(Exception):
    pass


def load_or_create_layout(data_dir: str, nodes: int, http_port: int, raft_port: int) -> list[dict]:
    path = os.path.join(data_dir, LAYOUT_FILE)
    if os.path.exists(path):
        with open(path) as f:
            layout = json.load(f)["nodes"]
        if len(layout) != nodes:
            raise UpError(f"{data_dir} holds a {len(layout)}-node cluster; run with --nodes {len(layout)} "
                          "or use another --data-dir")
        return layout
    if not 1 <= nodes <= 7:
        raise UpError("--nodes must be between 1 and 7")
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
        sys.stdout.write(f"[{prefix}] {line.decode('utf-8', 'replace')}")
        sys.stdout.flush()


def _leader_http(layout: list[dict]) -> str | None:
    by_raft = {n["raft"]: n for n in layout}
    for n in layout:
        try:
            with urllib.request.urlopen(f"http://{n['http']}/v1/status/leader", timeout=1) as resp:
                leader = json.loads(resp.read())
            if leader in by_raft:
                return by_raft[leader]["id"]
        except (OSError, ValueError):
            continue
    return None


def run(args) -> int:
    data_dir = os.path.abspath(args.data_dir)
    try:
        layout = load_or_create_layout(data_dir, args.nodes, args.http_port, args.raft_port)
        for n in layout:
            for addr in (n["http"], n["raft"]):
                if not _port_free(addr):
                    raise UpError(f"port {addr} is in use (another raftkv up?); pick --http-port/--raft-port")
    except UpError as exc:
        print(f"raftkv up: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    procs: dict[str, subprocess.Popen] = {}
    for n in layout:
        peers = ",".join(m["raft"] for m in layout if m is not n)
        cmd = [sys.executable, "-m", "api.cli", "serve", "--id", n["id"], "--raft", n["raft"], "--http", n["http"],
               "--data-dir", os.path.join(data_dir, n["id"])] + (["--peers", peers] if peers else [])
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        procs[n["id"]] = proc
        threading.Thread(target=_pump, args=(n["id"], proc.stdout), daemon=True).start()
    print(f"raftkv up: {len(layout)} nodes, data in {data_dir}")
    for n in layout:
        print(f"  {n['id']}  http://{n['http']}  (raft {n['raft']})")
    sys.stdout.flush()
    started = time.monotonic()
    announced = None
    exit_code = 0
    while not stop.wait(0.2):
        for node_id, proc in procs.items():
            if proc.poll() is not None and not getattr(proc, "_reported", False):
                proc._reported = True
                print(f"raftkv up: node {node_id} exited with code {proc.returncode}", flush=True)
                if announced is None:  # a node that dies at start-up: stop the whole cluster
                    stop.set()
                    exit_code = 1
        if announced is None and time.monotonic() - started < 60:
            leader = _leader_http(layout)
            if leader:
                announced = leader
                print(f"raftkv up: leader is {leader}; ready in {time.monotonic() - started:.1f}s. "
                      f"Try: curl -X PUT --data-binary hello http://{layout[0]['http']}/v1/kv/greeting", flush=True)
    print("raftkv up: stopping nodes", flush=True)
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
