"""The chaos lock workload: clients contend for one lock while faults hit the nodes and the
holders themselves, and a verdict says whether the lock kept its promise.

Each contender is a process (loadtest/chaos/lock_client.py), so that a holder can be paused
past its TTL like a process stuck in GC. Faults, at given seconds into the run:

* `pause-holder`: SIGSTOP the client holding the lock (as the store says) until another
  session holds it (its TTL, plus up to another after a leader change, plus lock-delay; at
  most 3 TTLs), and one second more;
* `kill-leader`: SIGKILL the leader node, restarted 3 s later.

The verdict (`judge`), from the clients' records and the store:

* every fencing token (LockIndex) was acquired by one session only;
* the fenced writes the store accepted, in commit order, carry non-decreasing tokens: no two
  tenures overlapped according to the store, whatever the holders believed;
* writes attempted with an old token (a holder that woke up after losing the lock) were refused
  (counted; a pause past the TTL should produce at least one);
* per fault: how long the lock was unavailable (from the fault to the next accepted fenced
  write by a client that was not paused).

`raftkv chaos --workload lock` runs it on a cluster of its own (`lock_schedule`: holder pauses
and leader kills in turn); the KV workload's schedules, partitions and reports are not used.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from loadtest.harness.cluster import Cluster

LOCK_KEY = "chaos/lock"
FENCE_KEY = "chaos/fence"
MAX_PAUSE_TTLS = 3.0
RESTART_AFTER_S = 3.0


def lock_schedule(duration_s: float, ttl_s: float = 10.0) -> list[tuple[float, str]]:
    """Holder pauses and leader kills in turn, from 3 s in, each given time to end before the next."""
    faults, at, kinds = [], 3.0, ("pause-holder", "kill-leader")
    while at + 8 <= duration_s:
        kind = kinds[len(faults) % 2]
        faults.append((at, kind))
        at += (ttl_s + 8) if kind == "pause-holder" else 8
    return faults


def summary(verdict: dict) -> str:
    worst = {}
    for u in verdict["unavailability"]:
        if u["unavailable_s"] is not None:
            worst[u["kind"]] = max(worst.get(u["kind"], 0.0), u["unavailable_s"])
    return (f"lock chaos: {'PASS' if verdict['ok'] else 'FAIL'}: {verdict['tenures']} tenures, "
            f"{verdict['accepted_writes']} fenced writes accepted in token order, "
            f"{verdict['stale_token_refusals']} stale-token writes refused; unavailable at most "
            + (", ".join(f"{s:.1f}s after {k}" for k, s in sorted(worst.items())) or "-")
            + ("; " + "; ".join(verdict["violations"]) if verdict["violations"] else ""))


def run_lock_workload(cluster: Cluster, out_dir: str, duration_s: float, faults: list[tuple[float, str]],
                      clients: int = 3, ttl_s: float = 10.0) -> dict:
    """Run the contenders for `duration_s` with `faults` [(seconds into the run, kind)], then
    judge. Returns {"events", "faults", "verdict"}."""
    addrs = ",".join(n.http for n in cluster.nodes)
    paths = [os.path.join(out_dir, f"lock-client-{i}.jsonl") for i in range(clients)]
    procs = [subprocess.Popen([sys.executable, "-m", "loadtest.chaos.lock_client", f"c{i}", addrs, LOCK_KEY,
                               FENCE_KEY, paths[i], str(duration_s), str(ttl_s)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(clients)]
    t0 = time.time()
    done: list[dict] = []
    try:
        for at_s, kind in sorted(faults):
            time.sleep(max(0.0, t0 + at_s - time.time()))
            done.append(_apply(kind, cluster, procs, paths, ttl_s))
        for proc in procs:
            proc.wait(max(1.0, t0 + duration_s + 30 - time.time()))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait(10)
        for node in cluster.nodes:
            if not node.alive():
                node.start()
    events = sorted((e for path in paths for e in _read_events(path)), key=lambda e: e["t"])
    return {"events": events, "faults": done, "verdict": judge(events, done)}


def _apply(kind: str, cluster: Cluster, procs: list[subprocess.Popen], paths: list[str], ttl_s: float) -> dict:
    started = time.time()
    if kind == "kill-leader":
        leader = cluster.leader()
        leader.kill()
        time.sleep(RESTART_AFTER_S)
        leader.start()
        return {"t": started, "kind": kind, "target": leader.node_id}
    if kind == "pause-holder":
        session = _holder_session(cluster)
        owners = {e["session"]: int(e["client"][1:]) for p in paths for e in _read_events(p) if e["ev"] == "acquired"}
        if session is None or session not in owners:
            return {"t": started, "kind": kind, "target": None, "skipped": "nobody held the lock"}
        proc = procs[owners[session]]
        proc.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + MAX_PAUSE_TTLS * ttl_s
        while time.monotonic() < deadline and _holder_session(cluster) in (session, None):
            time.sleep(0.2)  # the poll interval while the holder is paused
        time.sleep(1.0)  # the new holder makes its first fenced writes
        proc.send_signal(signal.SIGCONT)
        return {"t": started, "kind": kind, "target": f"c{owners[session]}"}
    raise ValueError(f"unknown lock fault {kind!r}")


def _holder_session(cluster: Cluster) -> str | None:
    for node in cluster.nodes:
        try:
            with urllib.request.urlopen(f"{node.url}/v1/kv/{LOCK_KEY}?consistent", timeout=5) as resp:
                return json.loads(resp.read())[0].get("Session")
        except (OSError, ValueError):
            continue
    return None


def _read_events(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def judge(events: list[dict], faults: list[dict]) -> dict:
    """The verdict of one run (see the module docstring); `ok` when nothing was violated."""
    violations = []
    owner_of: dict[int, str] = {}
    for e in events:
        if e["ev"] == "acquired":
            if owner_of.setdefault(e["token"], e["session"]) != e["session"]:
                violations.append(f"token {e['token']} acquired by two sessions")
    accepted = sorted((e for e in events if e["ev"] == "write" and e["ok"]), key=lambda e: e["index"])
    for before, after in zip(accepted, accepted[1:], strict=False):
        if after["token"] < before["token"]:
            violations.append(f"write with token {after['token']} (index {after['index']}) accepted after one "
                              f"with token {before['token']} (index {before['index']})")
    stale = [e for e in events if e["ev"] == "write" and not e["ok"] and e.get("why") == "stale token"]
    unavailable = []
    for fault in faults:
        paused = fault["target"] if fault["kind"] == "pause-holder" else None
        nxt = next((e for e in accepted if e["t"] > fault["t"] and e["client"] != paused), None)
        unavailable.append({"kind": fault["kind"], "target": fault.get("target"),
                            "unavailable_s": round(nxt["t"] - fault["t"], 2) if nxt else None})
    return {"ok": not violations, "violations": violations[:20], "tenures": len(owner_of),
            "accepted_writes": len(accepted), "stale_token_refusals": len(stale),
            "highest_token": max(owner_of, default=0), "unavailability": unavailable}
