"""`raftkv loadtest`: start a local cluster (or target given nodes), run a locust scenario
headless for a fixed time, and leave locust's CSV and HTML reports in a folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from loadtest.harness.cluster import Cluster

LOCUSTFILE = os.path.join(os.path.dirname(__file__), "locustfile.py")
SCENARIOS = ["write-heavy", "strong-read-heavy", "stale-read", "mixed", "watchers"]


def register(sub) -> None:
    p = sub.add_parser("loadtest", help="run a locust scenario against a local (or given) cluster")
    p.add_argument("--scenario", choices=SCENARIOS, default="mixed")
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--time", default="60s", help="run time, locust syntax (30s, 2m)")
    p.add_argument("--nodes", type=int, default=3, help="size of the local cluster started for the run")
    p.add_argument("--addr", help="comma-separated HTTP HOST:PORT of an existing cluster (e.g. Docker compose)")
    p.add_argument("--out", default="loadtest-report", help="folder for the CSV and HTML reports")
    p.add_argument("--key-bytes", type=int, default=16)
    p.add_argument("--value-bytes", type=int, default=128)
    p.add_argument("--keyspace", type=int, default=10_000)
    p.set_defaults(_run=run)


def run(args) -> int:
    if shutil.which("locust") is None and not _module_available("locust"):
        print("raftkv loadtest: locust is not installed (pip install -e '.[load]')", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    cluster = None
    tmp = None
    try:
        if args.addr:
            nodes = [a.strip() for a in args.addr.split(",") if a.strip()]
        else:
            tmp = tempfile.mkdtemp(prefix="raftkv-loadtest-")
            cluster = Cluster(tmp, size=args.nodes).start()
            cluster.leader(timeout=60)
            nodes = [n.http for n in cluster.nodes]
            print(f"raftkv loadtest: local {args.nodes}-node cluster on {', '.join(nodes)}", flush=True)
        env = {**os.environ, "RAFTKV_NODES": ",".join(nodes), "RAFTKV_SCENARIO": args.scenario,
               "RAFTKV_KEY_BYTES": str(args.key_bytes), "RAFTKV_VALUE_BYTES": str(args.value_bytes),
               "RAFTKV_KEYSPACE": str(args.keyspace)}
        prefix = os.path.join(args.out, args.scenario)
        cmd = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "-u", str(args.users),
               "-r", str(args.users), "-t", args.time, "--host", f"http://{nodes[0]}", "--csv", prefix,
               "--html", prefix + ".html", "--only-summary"]
        code = subprocess.call(cmd, env=env)
        print(f"raftkv loadtest: reports in {prefix}_stats.csv and {prefix}.html", flush=True)
        return code
    finally:
        if cluster is not None:
            cluster.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _module_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
