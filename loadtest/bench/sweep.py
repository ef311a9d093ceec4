"""`raftkv bench`: a closed-loop HTTP benchmark that prints figures, not verdicts.

Each point of the sweep runs C concurrent clients (spread over P processes), each sending
its next request as soon as the previous one answered, for a fixed time after a warm-up;
requests are spread over all nodes. For every (workload, concurrency) it reports ops/s and
p50/p90/p99/max latency, as a table and JSON, and draws throughput and p99 against
concurrency (PNG). It starts its own 3-node cluster unless given --addr, and first measures
its own ceiling against a trivial HTTP server, so the reader knows whether the load
generator or the cluster was the limit, and reports the generator's own CPU (user + system
of its processes over the measured seconds) for every point: it shares the cores. `--etcd`
points the same generator at etcd's JSON gateway (v3 API) for side-by-side runs.
`--addr https://...` with --ca-file (and --client-cert/--client-key for nodes that require
one) measures a cluster serving TLS.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import sys
import tempfile
import time

import aiohttp
from aiohttp import web

from api.cli_http import ClientError, Endpoint, add_tls_options, request, tls_context
from api.http_client import client_session
from api.tls import client_context
from loadtest.bench.quantiles import ms
from loadtest.harness.cluster import Cluster

WORKLOADS = ["put", "get", "get-consistent", "get-stale", "mixed"]
DEFAULT_SWEEP = [1, 8, 32, 128]


def register(sub) -> None:
    p = sub.add_parser("bench", help="closed-loop HTTP benchmark with a concurrency sweep")
    p.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=["put", "get", "get-consistent", "get-stale"])
    p.add_argument("--concurrency", type=int, nargs="+", default=DEFAULT_SWEEP)
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per point")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each point")
    p.add_argument("--procs", type=int, default=1, help="client processes")
    p.add_argument("--nodes", type=int, default=3, help="size of the local cluster (without --addr)")
    p.add_argument("--addr", help="comma-separated [https://]HOST:PORT of running raftkv nodes")
    add_tls_options(p)  # --ca-file, --client-cert, --client-key
    p.add_argument("--etcd", help="comma-separated HOST:PORT of etcd client URLs (v3 JSON gateway)")
    p.add_argument("--value-bytes", type=int, default=128)
    p.add_argument("--key-bytes", type=int, default=16)
    p.add_argument("--keyspace", type=int, default=10_000)
    p.add_argument("--no-ceiling", action="store_true", help="skip the trivial-server ceiling measurement")
    p.add_argument("--plain-raft", action="store_true",
                   help="the local cluster without a cluster secret (Raft unauthenticated, unencrypted): its cost")
    p.add_argument("--out", default="bench-results", help="folder for JSON and PNG")
    p.add_argument("--label", default=None, help="name of this target in the results")
    p.set_defaults(_run=run)


# -- one client process ---------------------------------------------------------------------------

class Target:
    """How to express each workload as an HTTP request for raftkv or for etcd."""

    def __init__(self, kind: str, nodes: list[str], key_bytes: int, value: bytes, keyspace: int,
                 tls_files: tuple[str | None, str | None, str | None] = (None, None, None)) -> None:
        """`nodes`: HOST:PORT or SCHEME://HOST:PORT; `tls_files`: CA, client certificate and key
        (files, not a context: a Target travels to the client processes)."""
        self.kind, self.nodes, self.value, self.keyspace = kind, nodes, value, keyspace
        self.tls_files = tls_files
        self.key_bytes = key_bytes
        self.value_b64 = base64.b64encode(value).decode()

    def key(self, rng: random.Random) -> str:
        return f"{rng.randrange(self.keyspace):0{self.key_bytes}d}"[-self.key_bytes:]

    def request(self, workload: str, rng: random.Random, key: str | None = None, node: str | None = None):
        """(method, URL, body bytes, JSON body) of one request; a random node and key unless given."""
        node = node or rng.choice(self.nodes)
        if workload == "mixed":
            workload = rng.choice(["put", "get", "get", "get-stale"])
        key = key or self.key(rng)
        if self.kind == "trivial":
            return "GET", f"http://{node}/", None, None
        if self.kind == "etcd":
            k = base64.b64encode(key.encode()).decode()
            if workload == "put":
                return "POST", f"http://{node}/v3/kv/put", None, {"key": k, "value": self.value_b64}
            body = {"key": k}
            if workload == "get-stale":
                body["serializable"] = True
            return "POST", f"http://{node}/v3/kv/range", None, body  # linearizable by default
        url = f"{node if '://' in node else 'http://' + node}/v1/kv/{key}"
        if workload == "put":
            return "PUT", url, self.value, None
        query = {"get": "", "get-consistent": "?consistent", "get-stale": "?stale"}[workload]
        return "GET", url + query, None, None


async def _closed_loop(target: Target, workload: str, clients: int, warmup: float, duration: float,
                       seed: int) -> dict:
    latencies: list[float] = []
    errors = 0
    start = time.monotonic()
    measure_from, stop_at = start + warmup, start + warmup + duration
    ssl_context = client_context(*target.tls_files) if any(target.tls_files) else None
    connector = aiohttp.TCPConnector(limit=0, force_close=False, ssl=ssl_context or True)
    async with client_session(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        async def client(c: int) -> None:
            nonlocal errors
            rng = random.Random(seed * 100_003 + c)
            while (now := time.monotonic()) < stop_at:
                method, url, data, body = target.request(workload, rng)
                t = time.perf_counter()
                try:
                    async with session.request(method, url, data=data, json=body) as r:
                        await r.read()
                        ok = r.status in (200, 404)
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                elapsed = time.perf_counter() - t
                if now >= measure_from:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors += 1

        async def cpu_at_measure_start() -> None:
            await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
            cpu_from.append(time.process_time())

        cpu_from: list[float] = []
        await asyncio.gather(cpu_at_measure_start(), *(client(c) for c in range(clients)))
    # This process's CPU (user + system, all its threads) over the measured window.
    return {"latencies": latencies, "errors": errors, "seconds": duration,
            "cpu_s": time.process_time() - cpu_from[0]}


def _worker(args) -> dict:
    target, workload, clients, warmup, duration, seed = args
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(_closed_loop(target, workload, clients, warmup, duration, seed))


def measure_point(target: Target, workload: str, concurrency: int, procs: int, warmup: float,
                  duration: float) -> dict:
    procs = max(1, min(procs, concurrency))
    shares = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    jobs = [(target, workload, n, warmup, duration, i) for i, n in enumerate(shares)]
    if procs == 1:
        parts = [_worker(jobs[0])]
    else:
        with mp.get_context("spawn").Pool(procs) as pool:
            parts = pool.map(_worker, jobs)
    lat = sorted(x for p in parts for x in p["latencies"])
    errors = sum(p["errors"] for p in parts)

    cpu_s = sum(p["cpu_s"] for p in parts)
    return {"workload": workload, "concurrency": concurrency, "ops_per_s": round(len(lat) / duration, 1),
            "p50_ms": ms(lat, 0.50), "p90_ms": ms(lat, 0.90), "p99_ms": ms(lat, 0.99), "max_ms": ms(lat, 1.0),
            "requests": len(lat), "errors": errors, "generator_cpu_s": round(cpu_s, 3),
            "generator_cores": round(cpu_s / duration, 3),
            "generator_us_per_op": round(1e6 * cpu_s / len(lat), 1) if lat else None}


# -- the ceiling: a trivial server ------------------------------------------------------------

def _trivial_server(port: int, ready) -> None:
    async def ok(_request):
        return web.Response(text="true")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)  # any path: the wrk generator asks for /v1/kv/<key>
    ready.set()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


@contextlib.contextmanager
def trivial_server():
    """HOST:PORT of an HTTP server answering `true` to anything, in a process of its own."""
    from loadtest.harness.cluster import free_ports

    (port,) = free_ports(1)
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    server = ctx.Process(target=_trivial_server, args=(port, ready), daemon=True)
    server.start()
    ready.wait(10)
    time.sleep(0.5)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.join(5)


def measure_ceiling(concurrency: int, procs: int, warmup: float, duration: float) -> dict:
    with trivial_server() as addr:
        return measure_point(Target("trivial", [addr], 16, b"", 1), "get", concurrency, procs, warmup, duration)


# -- the command ----------------------------------------------------------------------------------

def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine()}


def print_table(points: list[dict]) -> None:
    print(f"{'workload':<15} {'conc':>5} {'ops/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'errors':>7} {'gen cores':>9} {'gen µs/op':>9}")
    for p in points:
        print(f"{p['workload']:<15} {p['concurrency']:>5} {p['ops_per_s']:>9} {p['p50_ms']!s:>8} {p['p90_ms']!s:>8} "
              f"{p['p99_ms']!s:>8} {p['max_ms']!s:>8} {p['errors']:>7} {p['generator_cores']!s:>9} "
              f"{p['generator_us_per_op']!s:>9}")


def plot(results: dict, path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is not installed; no PNG (pip install -e '.[load]')", file=sys.stderr)
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, run_ in results["runs"].items():
        for workload in sorted({p["workload"] for p in run_["points"]}):
            pts = [p for p in run_["points"] if p["workload"] == workload]
            xs = [p["concurrency"] for p in pts]
            ax1.plot(xs, [p["ops_per_s"] for p in pts], marker="o", label=f"{label} {workload}")
            ax2.plot(xs, [p["p99_ms"] for p in pts], marker="o", label=f"{label} {workload}")
    if results.get("ceiling"):
        ax1.axhline(results["ceiling"]["ops_per_s"], color="grey", linestyle=":", label="client ceiling")
    for ax, title in ((ax1, "throughput (ops/s)"), (ax2, "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    ax2.set_yscale("log")
    ax1.legend(fontsize=7)
    fig.suptitle(f"raftkv bench — {results['machine']['cpus']} CPUs, {results['value_bytes']} B values")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def _unreachable(args) -> str | None:
    """Why a node of --addr cannot be asked (a certificate refused, nothing listening), before
    a sweep would count every request as an error."""
    try:
        ssl_context = tls_context(args)
        for node in args.addr.split(","):
            if node.strip():
                request(Endpoint(node, ssl_context, bool(args.client_cert)), "GET", "/v1/status/leader", timeout=5)
    except ClientError as exc:
        return str(exc)
    return None


def run(args) -> int:
    if args.addr and not args.etcd and (problem := _unreachable(args)):
        print(f"raftkv bench: {problem}", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    value = b"v" * args.value_bytes
    results = {"machine": machine(), "value_bytes": args.value_bytes, "key_bytes": args.key_bytes,
               "duration_s": args.duration, "warmup_s": args.warmup, "procs": args.procs, "runs": {},
               "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if not args.no_ceiling:
        conc = max(args.concurrency)
        print(f"bench: client ceiling against a trivial server, {conc} clients ...", file=sys.stderr, flush=True)
        results["ceiling"] = measure_ceiling(conc, args.procs, args.warmup, min(args.duration, 5.0))
        print(f"bench: ceiling {results['ceiling']['ops_per_s']} req/s (p99 {results['ceiling']['p99_ms']} ms)",
              file=sys.stderr, flush=True)
    cluster, tmp = None, None
    try:
        if args.etcd:
            label = args.label or "etcd"
            target = Target("etcd", args.etcd.split(","), args.key_bytes, value, args.keyspace)
        elif args.addr:
            label = args.label or "raftkv"
            target = Target("raftkv", [a.strip().rstrip("/") for a in args.addr.split(",") if a.strip()],
                            args.key_bytes, value, args.keyspace, (args.ca_file, args.client_cert, args.client_key))
        else:
            label = args.label or f"raftkv-{args.nodes}n"
            tmp = tempfile.mkdtemp(prefix="raftkv-bench-")
            cluster = Cluster(tmp, size=args.nodes, secret=not args.plain_raft).start()
            cluster.leader(timeout=60)
            target = Target("raftkv", [n.http for n in cluster.nodes], args.key_bytes, value, args.keyspace)
        points = []
        total = len(args.workloads) * len(args.concurrency)
        for w in args.workloads:
            for c in args.concurrency:
                print(f"bench: [{len(points) + 1}/{total}] {label} {w} x{c} ...", file=sys.stderr, flush=True)
                point = measure_point(target, w, c, args.procs, args.warmup, args.duration)
                print(f"bench:   {point['ops_per_s']} ops/s, p99 {point['p99_ms']} ms, errors {point['errors']}, "
                      f"load generator {point['generator_cores']} cores",
                      file=sys.stderr, flush=True)
                points.append(point)
        results["runs"][label] = {"target": target.kind, "nodes": target.nodes, "points": points}
    finally:
        if cluster is not None:
            cluster.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print_table(points)
    out_json = os.path.join(args.out, f"bench-{label}.json")
    with open(out_json, "w") as f:
        json.dump(results, f, indent=2)
    png = os.path.join(args.out, f"bench-{label}.png")
    if plot(results, png):
        print(f"bench: wrote {out_json} and {png}", file=sys.stderr)
    return 0
