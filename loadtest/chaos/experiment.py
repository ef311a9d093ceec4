"""`raftkv chaos`: a node-kill experiment with a verdict and a picture.

Starts a local cluster (or attaches to nodes described in a TOML file: loadtest/harness/attach.py),
runs a recorded workload (writes, check-and-sets, default, consistent and stale reads, spread
over all nodes) while a schedule of faults is applied (SIGKILL of the leader, a follower, a
majority, all nodes; SIGSTOP pauses; a rolling restart; partitions: leader or follower
isolated, leader in a minority, one link cut; slow and lossy links), heals everything, and
then judges what happened:

* linearizability of every key's history of writes, check-and-sets, default and consistent
  reads (the checker of loadtest/checker/linearizability.py);
* no lost acknowledged write: every write to a never-reused key that was acknowledged is read
  back after healing;
* staleness of stale reads (versions and milliseconds behind);
* per fault: the unavailability window (first failure to first success) and the time until
  a new leader was seen.

Partitions need root: each node then runs in its own network namespace (loadtest/chaos/network/netlab.py)
and cuts are nftables DROP rules; without root they are skipped, and the report says why.
Latency and loss come from a relay between the nodes (loadtest/chaos/network/relay.py), started only when
the schedule has such faults.

Writes a JSON report, a Markdown summary and a PNG timeline into --out.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from loadtest.chaos.faults import (
    EXTRA_S,
    LINK_FAULTS,
    PARTITIONS,
    SCHEDULES,
    FaultEvent,
    Network,
    apply_fault,
    mixed_schedule,
    unsupported,
)
from loadtest.chaos.lock_report import write_lock_reports
from loadtest.chaos.lock_workload import lock_schedule, run_lock_workload
from loadtest.chaos.lock_workload import summary as lock_summary
from loadtest.chaos.network import netlab
from loadtest.chaos.network.relay import Relay
from loadtest.chaos.report import per_kind, summary_line, write_reports
from loadtest.chaos.workload import WorkloadConfig, WorkloadResult, run_workload
from loadtest.checker import check_history
from loadtest.harness import attach
from loadtest.harness.cluster import HOST, NAMESPACE_RAFT_PORT, Cluster, free_ports

STRONG = {"write", "cas", "read-default", "read-consistent"}
LEADER_FAULTS = {"kill-leader", "pause-leader", "kill-majority", "kill-all", "rolling-restart", "isolate-leader",
                 "split-leader-minority"}


def register(sub) -> None:
    p = sub.add_parser("chaos", help="kill and pause nodes under load, then check what the cluster did")
    p.add_argument("--schedule", choices=sorted([*SCHEDULES, "mixed"]), default="short",
                   help="mixed: faults of every kind in random order for the whole --duration")
    p.add_argument("--duration", type=float, default=60.0, help="upper bound of the run, seconds")
    p.add_argument("--attach", metavar="NODES.toml", help="use running nodes described in this file (see docs)")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--clients", type=int, default=6)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="chaos-report")
    p.add_argument("--workload", choices=("kv", "lock"), default="kv",
                   help="lock: contenders for one lock under node kills, pauses, a partition and holder "
                        "pauses, the fencing verdict (loadtest/chaos/lock_workload.py; --duration, --nodes, "
                        "--seed and --out apply)")
    p.add_argument("--unfenced", action="store_true",
                   help="lock workload: the protected resource skips its token check (its verdict must FAIL)")
    p.set_defaults(_run=run)


class LeaderMonitor(threading.Thread):
    """Samples who leads, every 100 ms, as the nodes themselves report it."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(daemon=True)
        self.cluster, self.samples, self.stop = cluster, [], threading.Event()

    def run(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(self.cluster.nodes)) as pool:
            while not self.stop.wait(0.1):
                # in parallel, so that a paused node cannot slow the sampling down
                statuses = pool.map(lambda n: n.status(timeout=0.3) if n.alive() else None, self.cluster.nodes)
                leaders = {st["id"] for st in statuses if st and st["state"] == "leader"}
                self.samples.append((time.monotonic(), ",".join(sorted(leaders)) or None))


def run(args) -> int:
    if args.unfenced and args.workload != "lock":
        print("raftkv chaos: --unfenced applies to --workload lock only", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    if args.workload == "lock":
        return run_lock(args)
    rng = random.Random(args.seed)
    schedule = mixed_schedule(args.duration, rng) if args.schedule == "mixed" else SCHEDULES[args.schedule]
    root = tempfile.mkdtemp(prefix="raftkv-chaos-")
    report = None
    try:
        with contextlib.ExitStack() as stack:
            cluster, net = start_cluster(args, root, schedule, stack)
            cluster.leader(timeout=60)
            report = experiment(cluster, net, schedule, args, rng)
    except (attach.ConfigError, netlab.NetLabError) as exc:
        print(f"raftkv chaos: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a run that cannot finish is a FAIL with a report, not a traceback
        report = failed_report(args, f"{type(exc).__name__}: {exc}")
        print(f"chaos: the run could not finish: {report['verdict']['error']}", file=sys.stderr)
    finally:
        if report is not None and report["verdict"]["ok"]:
            shutil.rmtree(root, ignore_errors=True)
        elif report is not None:  # the nodes' logs are the evidence of a failed run
            report["logs"] = root
            print(f"chaos: node logs and data kept in {root}", file=sys.stderr)
    if "timeline" in report:
        write_reports(report, args.out)
    else:
        with open(os.path.join(args.out, "chaos.json"), "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    print(summary_line(report))
    return 0 if report["verdict"]["ok"] else 1


def failed_report(args, error: str) -> dict:
    """The report of a run that ended before its verdict: FAIL, and why."""
    return {"schedule": args.schedule, "nodes": args.nodes, "clients": args.clients, "seed": args.seed,
            "operations": 0, "faults": [],
            "verdict": {"ok": False, "error": error, "linearizable": None, "lost_acknowledged_writes": []}}


def run_lock(args) -> int:
    """The lock workload on a cluster of its own (in namespaces when partitions are possible);
    chaos.json, lock-chaos.md, lock-chaos.png and one summary line."""
    faults = lock_schedule(args.duration)
    root = tempfile.mkdtemp(prefix="raftkv-chaos-lock-")
    try:
        with contextlib.ExitStack() as stack:
            cluster, net = start_cluster(args, root, [(0, kind, 0) for _, kind in faults], stack)
            cluster.leader(timeout=60)
            report = run_lock_workload(cluster, args.out, args.duration, faults, net=net,
                                       fenced=not args.unfenced, seed=args.seed)
    except (attach.ConfigError, netlab.NetLabError) as exc:
        print(f"raftkv chaos: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(root, ignore_errors=True)
    write_lock_reports(report, args.out, fenced=not args.unfenced)
    print(lock_summary(report["verdict"]))
    return 0 if report["verdict"]["ok"] else 1


def start_cluster(args, root: str, schedule, stack: contextlib.ExitStack) -> tuple[Cluster, Network]:
    """The nodes (started here, or attached) and the means for network faults; all undone by `stack`."""
    if args.attach:
        cluster = attach.load(args.attach).start()
        return cluster, Network(why_not="attached nodes: partitions need nodes that raftkv chaos starts")
    names = [f"n{i + 1}" for i in range(args.nodes)]
    lab_ok, why_not = netlab.available()
    if lab_ok and not any(kind in PARTITIONS for _, kind, _ in schedule):
        lab_ok, why_not = False, "no partition in this schedule"  # and membership faults need plain nodes
    lab = stack.enter_context(netlab.NetLab(names)) if lab_ok else None
    if lab is not None:  # each node in its own namespace, at its own address
        hosts = [lab.address(n) for n in names]
        cluster = Cluster(root, args.nodes, hosts=hosts, prefixes=[lab.wrap(n, []) for n in names])
        real = {n.raft: f"{h}:{NAMESPACE_RAFT_PORT + 1}" for n, h in zip(cluster.nodes, hosts, strict=True)}
    else:
        print(f"chaos: partitions skipped: {why_not}", file=sys.stderr)
        cluster = Cluster(root, args.nodes)
        real = {n.raft: f"{HOST}:{p}" for n, p in zip(cluster.nodes, free_ports(args.nodes), strict=True)}
    relay = None
    if any(kind in LINK_FAULTS for _, kind, _ in schedule):
        # Nodes advertise the relay's address and bind their real one behind it.
        by_raft = {n.raft: n.node_id for n in cluster.nodes}
        listen = (lambda adv: lab.listen_socket(by_raft[adv], NAMESPACE_RAFT_PORT)) if lab else None
        relay = stack.enter_context(Relay(real, allowed=lab.subnet if lab else None, listen=listen))
        for n in cluster.nodes:
            n.extra_args += ["--raft-bind", real[n.raft]]
    stack.callback(cluster.stop)
    cluster.start()
    return cluster, Network(lab, relay, "" if lab_ok else why_not)


def experiment(cluster: Cluster, net: Network, schedule, args, rng: random.Random) -> dict:
    planned = sum(gap + hold + 2 + EXTRA_S.get(kind, 0) for gap, kind, hold in schedule) + 4
    run_s = min(args.duration, planned)
    cfg = WorkloadConfig(nodes=[n.http for n in cluster.nodes], duration_s=run_s, clients=args.clients, keys=3,
                         stale_share=0.15, unique_share=0.1, request_timeout_s=3.0,
                         max_ops=int(3000 * run_s))  # a bound above what 6 clients reach on 2 cores
    result = WorkloadResult()
    monitor = LeaderMonitor(cluster)
    t0 = time.monotonic()
    monitor.start()
    worker = threading.Thread(target=lambda: result.__dict__.update(asyncio.run(run_workload(cfg)).__dict__))
    worker.start()
    faults: list[FaultEvent] = []
    skipped: dict[str, str] = {}
    fault_error = ""
    for i, (gap, kind, hold) in enumerate(schedule):
        why = unsupported(kind, cluster, net)
        if why:
            skipped[kind] = why
            continue
        deadline = time.monotonic() + gap
        while time.monotonic() < deadline:
            progress(t0, i, len(schedule), worker)
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        if time.monotonic() - t0 + hold + 2 + EXTRA_S.get(kind, 0) > run_s:
            break
        print(f"chaos: t={time.monotonic() - t0:5.1f}s  {kind}", file=sys.stderr, flush=True)
        try:
            faults.append(apply_fault(kind, cluster, hold, rng, net))
        except Exception as exc:  # noqa: BLE001 - reported (chaos.json, verdict FAIL); the run still ends cleanly
            fault_error = f"{kind} could not complete: {type(exc).__name__}: {exc}"
            print(f"chaos: {fault_error}", file=sys.stderr, flush=True)
            break
    while worker.is_alive():
        progress(t0, len(faults), len(schedule), worker)
        worker.join(1.0)
    monitor.stop.set()
    monitor.join()
    heal(cluster, net)
    report = judge(cluster, result, faults, monitor.samples, t0, args)
    report["skipped_faults"] = skipped
    if fault_error:
        report["verdict"].update(ok=False, error=fault_error)
    report["per_kind"] = per_kind(report["faults"])
    report["network"] = {"namespaces": net.lab is not None, "relay": net.relay is not None,
                         "relay_links": {" - ".join(k): v for k, v in net.relay.stats().items()} if net.relay else {}}
    return report


def progress(t0: float, done: int, total: int, worker: threading.Thread) -> None:
    print(f"chaos: t={time.monotonic() - t0:5.1f}s  faults {done}/{total}  workload "
          f"{'running' if worker.is_alive() else 'done'}", file=sys.stderr, flush=True)


def heal(cluster: Cluster, net: Network) -> None:
    net.heal()
    for n in cluster.nodes:
        n.signal(18)  # SIGCONT whatever is still paused
        if not n.alive():
            n.start()
    cluster.leader(timeout=60)


def read_all(node, prefix: str) -> dict[str, str]:
    url = f"{node.url}/v1/kv/{prefix}?recurse&consistent"
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            entries = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return {}
        raise
    return {e["Key"]: base64.b64decode(e["Value"] or b"").decode() for e in entries}


def staleness(result: WorkloadResult) -> dict:
    """How far behind stale reads were. A read that returned the value of write W is behind by
    every acknowledged write that certainly came after W (invoked after W was acknowledged) and
    was acknowledged before the read began; milliseconds behind count from the first of those."""
    writes: dict[str, list] = {}
    by_value = {}
    for op in result.operations:
        if op.kind in ("write", "cas") and not op.unknown and (op.kind == "write" or op.ok):
            writes.setdefault(op.key, []).append(op)
            by_value[(op.key, op.value)] = op
    rets = {}
    for key, ops in writes.items():  # by acknowledgement time, so each read looks at a slice
        ops.sort(key=lambda w: w.ret)
        rets[key] = [w.ret for w in ops]
    behind_versions, behind_ms = [], []
    for read in result.stale_reads:
        source = by_value.get((read.key, read.value))
        if source is None and read.value is not None:
            continue  # written by a write of unknown outcome: cannot place it
        after = source.ret if source is not None else float("-inf")
        # A write invoked after `after` was acknowledged after it too: only acknowledgements in
        # (after, read.call) can count (a scan of every write per read took hours on 30 minutes).
        ops, times = writes.get(read.key, []), rets.get(read.key, [])
        window = ops[bisect.bisect_right(times, after):bisect.bisect_left(times, read.call)]
        newer = [w for w in window if w.call > after]
        behind_versions.append(len(newer))
        behind_ms.append((read.call - newer[0].ret) * 1000 if newer else 0.0)
    if not behind_versions:
        return {"reads": 0}
    fresh = sum(1 for v in behind_versions if v == 0)
    return {"reads": len(behind_versions), "up_to_date": fresh, "max_versions_behind": max(behind_versions),
            "max_ms_behind": round(max(behind_ms), 1),
            "p99_ms_behind": round(sorted(behind_ms)[int(0.99 * (len(behind_ms) - 1))], 1)}


def windows(result: WorkloadResult, faults: list[FaultEvent], samples: list, t0: float) -> list[dict]:
    strong = sorted((t, outcome) for t, kind, outcome, _ in result.timeline if kind in STRONG)
    out = []
    for i, f in enumerate(faults):
        end = faults[i + 1].started if i + 1 < len(faults) else float("inf")
        after = [(t, o) for t, o in strong if f.started <= t < end]
        # The unavailability window: the longest time in which no strong operation succeeded,
        # from the fault on (first failure to the next success, at its worst).
        oks = [f.started] + [t for t, o in after if o == "ok"]
        window = max((b - a for a, b in zip(oks, oks[1:], strict=False)), default=0.0)
        old = f.old_leader
        new_leader = None
        if f.kind in LEADER_FAULTS:  # the time until a leader other than the old one (any, after kill-all)
            new_leader = next((t for t, leader in samples if t > f.started and leader and "," not in leader
                               and (leader != old or f.kind in ("kill-all", "kill-majority") and t > f.healed)), None)
        out.append({**f.to_json(t0), "unavailable_s": round(window, 3),
                    "new_leader_after_s": round(new_leader - f.started, 3) if new_leader else None,
                    "failed_ops": sum(1 for _, o in after if o != "ok")})
    return out


def judge(cluster: Cluster, result: WorkloadResult, faults: list[FaultEvent], samples: list, t0: float,
          args) -> dict:
    verdicts = check_history(result.operations)
    leader = cluster.leader(timeout=60)
    stored = read_all(leader, "chaos/u/")
    lost = sorted(k for k, v in result.unique_acked.items() if stored.get(k) != v)
    per_fault = windows(result, faults, samples, t0)
    ok = all(v.ok for v in verdicts) and not lost
    return {
        "schedule": args.schedule, "nodes": len(cluster.nodes), "clients": args.clients, "seed": args.seed,
        "operations": len(result.timeline), "counts": result.counts,
        "verdict": {"ok": ok, "linearizable": all(v.ok for v in verdicts),
                    "keys": [str(v) for v in verdicts], "acknowledged_unique_writes": len(result.unique_acked),
                    "lost_acknowledged_writes": lost},
        "stale_reads": staleness(result), "faults": per_fault,
        "timeline": [(round(t - t0, 3), kind, outcome, node) for t, kind, outcome, node in result.timeline],
        "leaders": [(round(t - t0, 3), leader) for t, leader in samples],
    }
