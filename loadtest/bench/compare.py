"""raftkv against etcd 3.4 on this machine, in one run, with two load generators.

    python -m loadtest.bench.compare [--duration 10] [--rounds 1] [--generators python wrk]
        [--raftkv-build LABEL=/path/to/venv/bin/raftkv ...] [--out loadtest/results/compare.json]

Runs the same closed-loop workloads (puts; linearizable and stale/serializable reads) at 1
and 32 clients against a local 3-node cluster of each raftkv build and a local 3-node etcd
cluster, each driven by the Python generator (`sweep.py`, aiohttp) and by the compiled one
(`wrk.py`, Debian's wrk), and saves every point as JSON for `report.py` (BENCHMARKS.md) with
a PNG of ops/s per workload and system. Both generators run on the cores they measure, so
every point carries the generator's own CPU. Each build (`--raftkv-build`, repeatable; the
default is this checkout) is started from its own `raftkv` script, so before/after of a
change is measured in one run; with `--rounds N` the systems run N times, in alternating
order, and the report takes medians. The keyspace is written once before the cells run, so
that reads find their keys. Every cell is bounded by --warmup + --duration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import aiohttp

from loadtest.bench import report, wrk
from loadtest.bench.etcd import EtcdCluster
from loadtest.bench.sweep import Target, machine, measure_ceiling, trivial_server
from loadtest.bench.sweep import measure_point as python_point
from loadtest.harness.cluster import Cluster

WORKLOADS = ["put", "get-consistent", "get-stale"]
GENERATORS = ["python", "wrk"]
KEY_BYTES, VALUE_BYTES = 16, 128
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_arg(text: str) -> tuple[str, str]:
    """LABEL=PATH of --raftkv-build, checked: argparse turns the ValueError into a one-line error."""
    label, sep, path = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9._-]+", label) or label == "etcd":
        raise argparse.ArgumentTypeError(f"expected LABEL=/path/to/venv/bin/raftkv (LABEL of letters, digits, "
                                         f"._-, not 'etcd'), got {text!r}")
    path = os.path.abspath(os.path.expanduser(path))
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise argparse.ArgumentTypeError(f"{path} is not an executable file (a venv's bin/raftkv)")
    return label, path


def describe_build(command: list[str]) -> dict:
    """Where a build's code comes from (its checkout and commit), so the results say what ran."""
    python = sys.executable if command[0] == sys.executable else os.path.join(os.path.dirname(command[0]), "python")
    info: dict = {"command": command, "source": None, "commit": None, "dirty": None}
    try:
        src = subprocess.run([python, "-c", "import api, os; print(os.path.dirname(os.path.dirname("
                                            "os.path.abspath(api.__file__))))"],
                             capture_output=True, text=True, timeout=60, cwd="/", check=True).stdout.strip()
        info["source"] = src
        info["commit"] = subprocess.run(["git", "-C", src, "rev-parse", "--short", "HEAD"], capture_output=True,
                                        text=True, timeout=30, check=True).stdout.strip()
        info["dirty"] = bool(subprocess.run(["git", "-C", src, "status", "--porcelain", "--untracked-files=no"],
                                            capture_output=True, text=True, timeout=30).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass  # not a git checkout, or the build's python is elsewhere: the command alone says what ran
    return info


async def prefill(target: Target, keyspace: int) -> None:
    """Write every key of the keyspace once (32 at a time, over all nodes), so that reads hit."""
    keys = iter(range(keyspace))

    async def writer(session: aiohttp.ClientSession) -> None:
        for i in keys:  # one shared iterator: each key is taken by one writer
            key = f"{i:0{KEY_BYTES}d}"[-KEY_BYTES:]
            method, url, data, body = target.request("put", None, key=key, node=target.nodes[i % len(target.nodes)])
            for _ in range(5):
                try:
                    async with session.request(method, url, data=data, json=body) as r:
                        await r.read()
                        if r.status == 200:
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.2)
            else:
                raise RuntimeError(f"could not write key {key} to {target.kind} before the run")

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(writer(session) for _ in range(32)))


def run_system(system: dict, args, round_: int, progress) -> list[dict]:
    """Every cell against one fresh cluster of one system."""
    points = []
    root = tempfile.mkdtemp(prefix="raftkv-compare-")
    try:
        if system["kind"] == "etcd":
            cluster: EtcdCluster | Cluster = EtcdCluster(root).start()
            nodes = list(cluster.clients)
        else:
            cluster = Cluster(root, command=system["build"]["command"]).start()
            nodes = [n.http for n in cluster.nodes]
        try:
            if isinstance(cluster, Cluster):
                cluster.leader(timeout=60)
            target = Target(system["kind"], nodes, KEY_BYTES, b"v" * VALUE_BYTES, args.keyspace)
            started = time.monotonic()
            asyncio.run(asyncio.wait_for(prefill(target, args.keyspace), 300))
            progress(f"{system['label']}: {args.keyspace} keys written in {time.monotonic() - started:.1f} s")
            for workload in args.workloads:
                for c in args.concurrency:
                    for gen in args.generators:
                        progress(f"{system['label']} {gen} {workload} x{c} ...", cell=True)
                        if gen == "python":
                            p = {"generator": "python",
                                 **python_point(target, workload, c, args.procs, args.warmup, args.duration)}
                        else:
                            p = wrk.measure_point(system["kind"], nodes, workload, c, args.warmup, args.duration,
                                                  args.keyspace, KEY_BYTES, VALUE_BYTES, seed=len(points) + 1)
                        p.update(system=system["label"], round=round_)
                        points.append(p)
                        progress(f"  {p['ops_per_s']} ops/s, p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms, "
                                 f"errors {p['errors']}, load generator {p['generator_cores']} cores "
                                 f"({p['generator_us_per_op']} µs/op)")
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return points


def ceilings(args) -> dict:
    """Each generator against a trivial server: the most it can drive on this machine."""
    c = max(args.concurrency)
    out = {}
    if "python" in args.generators:
        out["python"] = measure_ceiling(c, args.procs, min(args.warmup, 1.0), min(args.duration, 5.0))
    if "wrk" in args.generators:
        with trivial_server() as addr:
            out["wrk"] = wrk.measure_point("raftkv", [addr], "get", c, min(args.warmup, 1.0), min(args.duration, 5.0),
                                           keyspace=100)
    return out


def plot(doc: dict, path: str) -> bool:
    """Grouped bars: ops/s per workload and clients, one bar per system, one panel per generator."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("compare: matplotlib is not installed; no PNG (pip install -e '.[load]')", file=sys.stderr)
        return False
    cells = report.summarize(doc)
    gens = [g for g in GENERATORS if any(k[0] == g for k in cells)]
    groups = sorted({(k[1], k[2]) for k in cells}, key=lambda wc: (WORKLOADS.index(wc[0])
                                                                  if wc[0] in WORKLOADS else 9, wc[1]))
    systems = [s["label"] for s in doc["systems"]]
    # One y axis for both panels, logarithmic: single-client writes and 32-client stale reads
    # differ by 20x, and the same system should be comparable across generators.
    fig, axes = plt.subplots(1, len(gens), figsize=(6.5 * len(gens), 4.5), squeeze=False, sharey=True)
    width = 0.8 / max(1, len(systems))
    for ax, gen in zip(axes[0], gens, strict=True):
        for i, label in enumerate(systems):
            values = [cells.get((gen, w, c, label), {}).get("ops_per_s") or 0 for w, c in groups]
            bars = ax.bar([g + (i - (len(systems) - 1) / 2) * width for g in range(len(groups))], values, width,
                          label=label)
            ax.bar_label(bars, [f"{v:,.0f}" for v in values], fontsize=6, rotation=90, padding=2)
        ax.set_xticks(range(len(groups)), [f"{w}\n×{c}" for w, c in groups], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylim(top=4 * max([v["ops_per_s"] or 1 for v in cells.values()], default=1))  # room for the labels
        ax.set_ylabel("ops/s (log)")
        ax.set_title(f"load generator: {gen}")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"raftkv and etcd 3.4, 3 nodes each — {doc['machine']['cpus']} CPUs, "
                 f"{doc['duration_s']:g} s per cell, {doc['rounds']} round(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.bench.compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per cell (wrk: whole seconds)")
    ap.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each cell")
    ap.add_argument("--procs", type=int, default=2, help="processes of the Python generator")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=WORKLOADS)
    ap.add_argument("--generators", nargs="+", choices=GENERATORS, default=GENERATORS)
    ap.add_argument("--raftkv-build", type=build_arg, action="append", default=[], metavar="LABEL=PATH",
                    help="a raftkv build to measure (a venv's bin/raftkv); repeatable; default: this checkout")
    ap.add_argument("--no-etcd", action="store_true", help="only the raftkv builds")
    ap.add_argument("--rounds", type=int, default=1, help="run every system this many times, order alternating")
    ap.add_argument("--keyspace", type=int, default=10_000)
    ap.add_argument("--no-ceiling", action="store_true", help="skip the generators' trivial-server ceilings")
    ap.add_argument("--note", default="", help="a line the report prints with the figures (e.g. 'trial run')")
    ap.add_argument("--out", default=os.path.join(ROOT, "loadtest", "results", "compare.json"),
                    help="the JSON (the PNG goes beside it)")
    args = ap.parse_args(argv)
    if args.duration < 1 or args.warmup < 0 or args.rounds < 1 or args.keyspace < 1 or min(args.concurrency) < 1:
        ap.error("--duration must be at least 1 s; --warmup, --rounds, --keyspace and --concurrency positive")
    labels = [label for label, _ in args.raftkv_build]
    if len(set(labels)) != len(labels):
        ap.error(f"--raftkv-build labels must differ: {labels}")
    if "wrk" in args.generators and not wrk.available():
        ap.error("wrk is not installed (apt-get install wrk), or leave it out: --generators python")
    if not args.no_etcd and shutil.which("etcd") is None:
        ap.error("etcd is not installed (apt-get install etcd-server), or leave it out: --no-etcd")

    builds = args.raftkv_build or [("raftkv", None)]
    systems = [{"label": label, "kind": "raftkv",
                "build": describe_build([path] if path else [sys.executable, "-m", "api.cli"])}
               for label, path in builds]
    if not args.no_etcd:
        version = subprocess.run(["etcd", "--version"], capture_output=True, text=True, timeout=30).stdout
        systems.append({"label": "etcd", "kind": "etcd", "version": version.split("\n")[0].split()[-1]})
    cells = args.rounds * len(systems) * len(args.workloads) * len(args.concurrency) * len(args.generators)
    estimate = cells * (args.warmup + args.duration + 1) + args.rounds * len(systems) * 20 + 15
    state = {"cell": 0}

    def progress(text: str, cell: bool = False) -> None:
        if cell:
            state["cell"] += 1
            text = f"[{state['cell']}/{cells}] {text}"
        print(f"compare: {text}", file=sys.stderr, flush=True)

    progress(f"{cells} cells, about {estimate / 60:.0f} min; systems {[s['label'] for s in systems]}, "
             f"generators {args.generators}")
    doc = {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "note": args.note,
           "key_bytes": KEY_BYTES, "value_bytes": VALUE_BYTES, "keyspace": args.keyspace,
           "duration_s": args.duration, "warmup_s": args.warmup, "procs": args.procs, "rounds": args.rounds,
           "generators": args.generators, "systems": systems, "ceiling": {}, "points": [],
           "load_average": {"start": round(os.getloadavg()[0], 2)}}  # others' work on the machine, if any
    began = time.monotonic()
    if not args.no_ceiling:
        progress("the generators' ceilings against a trivial server ...")
        doc["ceiling"] = ceilings(args)
        progress("  " + ", ".join(f"{g} {p['ops_per_s']} req/s" for g, p in doc["ceiling"].items()))
    for r in range(args.rounds):
        for system in systems if r % 2 == 0 else systems[::-1]:
            try:
                doc["points"] += run_system(system, args, r + 1, progress)
            except (AssertionError, RuntimeError, OSError, TimeoutError) as exc:  # a build that does not start
                last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                print(f"compare: {system['label']} (round {r + 1}) failed, nothing written: {last}", file=sys.stderr)
                return 1
    doc["elapsed_s"] = round(time.monotonic() - began)
    doc["load_average"]["end"] = round(os.getloadavg()[0], 2)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
    png = os.path.splitext(args.out)[0] + ".png"
    plot(doc, png)
    print(report.compare_tables(doc))
    progress(f"done in {doc['elapsed_s']} s; wrote {args.out} and {png}; "
             "`python -m loadtest.bench.report` rewrites BENCHMARKS.md from it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
