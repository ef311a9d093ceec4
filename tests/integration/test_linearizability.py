"""Default and consistent reads, writes and check-and-sets are linearizable while the leader is
SIGKILLed, restarted, SIGSTOPped and resumed; and the checker is shown to catch stale reads."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time

import requests

from loadtest.chaos.workload import WorkloadConfig, run_workload
from loadtest.checker import WRITE, Operation, check_history


def fault_schedule(cluster, stop: threading.Event, log: list):
    """Leader SIGKILL + restart, leader SIGSTOP + SIGCONT, leader SIGKILL + restart."""
    steps = [(2.0, "kill"), (4.5, "restart"), (7.0, "pause"), (9.5, "resume"), (12.0, "kill"), (14.5, "restart")]
    start = time.monotonic()
    victim = None
    for at, action in steps:
        while time.monotonic() - start < at:  # a timeline on purpose: the faults land at set times in the workload
            if stop.wait(0.05):
                return
        if action in ("kill", "pause"):
            victim = cluster.leader(timeout=15)
            victim.kill() if action == "kill" else victim.signal(signal.SIGSTOP)
        elif action == "restart":
            victim.start()
        else:
            victim.signal(signal.SIGCONT)
        log.append((round(time.monotonic() - start, 2), action, victim.node_id))


def dump_history(path, ops) -> None:
    with open(path, "w") as f:
        json.dump([{**{k: getattr(o, k) for k in ("kind", "key", "call", "value", "expected", "ok", "client")},
                    "ret": None if o.unknown else o.ret, "meta": o.meta} for o in ops], f, indent=0)


def test_history_under_leader_kills_and_pauses_is_linearizable(cluster, tmp_path):
    faults: list = []
    stop = threading.Event()
    injector = threading.Thread(target=fault_schedule, args=(cluster, stop, faults))
    injector.start()
    try:
        cfg = WorkloadConfig(nodes=[n.http for n in cluster.nodes], duration_s=17, clients=6, keys=3)
        result = asyncio.run(run_workload(cfg))
    finally:
        stop.set()
        injector.join()
        for n in cluster.nodes:
            n.signal(signal.SIGCONT)
    print(f"faults: {faults}; outcomes: {result.counts}; refusals: {result.drop_reasons}")
    assert len(faults) == 6, faults
    completed = [op for op in result.operations if not op.unknown]
    assert len(completed) > 300, f"too few completed operations to mean anything: {result.counts}"
    verdicts = check_history(result.operations)
    dump_history(tmp_path / "history.json", result.operations)
    print(f"history: {tmp_path / 'history.json'}")
    for v in verdicts:
        print(v)
    assert all(v.ok for v in verdicts), "\n".join(str(v) for v in verdicts if not v.ok)


def test_checker_catches_stale_reads_from_a_follower_kept_behind(cluster, tmp_path):
    leader = cluster.leader()
    behind = next(n for n in cluster.nodes if n is not leader)
    key = "lin/k0"
    history: list[Operation] = []

    def write(value):
        call = time.monotonic()
        assert requests.put(f"{leader.url}/v1/kv/{key}", data=value, timeout=10).json() is True
        history.append(Operation(WRITE, key, call, time.monotonic(), value, client="w"))

    write("old")
    cluster.wait_applied(int(requests.get(f"{leader.url}/v1/kv/{key}", timeout=10).headers["X-Consul-Index"]))
    behind.kill()
    write("new")
    # Bring the follower back cut off from its cluster: the others are paused (its saved
    # membership would otherwise lead it straight back to them), so it keeps serving its own,
    # now outdated, copy to stale reads.
    for n in cluster.nodes:
        if n is not behind:
            n.signal(signal.SIGSTOP)
    behind.start()
    cluster.wait_for("the cut-off follower to answer", lambda: behind.status())
    stale = asyncio.run(run_workload(WorkloadConfig(nodes=[behind.http], duration_s=1, clients=2, keys=1),
                                     stale_nodes=[behind.http]))
    # It restarts from its journal: "old", or nothing if it had not yet recorded "old" as committed.
    assert stale.stale_reads and all(op.value in ("old", None) for op in stale.stale_reads)
    verdicts = check_history(history + stale.stale_reads)
    assert not verdicts[0].ok, "the checker must reject these reads after 'new' was acknowledged"
    # ... while the same reads from the leader's side are fine.
    assert check_history(history + [Operation("read", key, time.monotonic(), time.monotonic() + 1, "new")])[0].ok
