"""The chaos lock workload: clients contend for one lock while faults hit the nodes and the
holders themselves, and a verdict says whether the lock kept its promise.

Each contender is a process (loadtest/chaos/lock_client.py), so that a holder can be paused
past its TTL like a process stuck in GC. Faults, at given seconds into the run:

* `pause-holder`: SIGSTOP the client holding the lock (as the store says) until another
  session holds it (its TTL, plus up to another after a leader change, plus lock-delay; at
  most 3 TTLs), and one second more, so that it wakes up to a lock it lost;
* `kill-leader`, `kill-follower`, `pause-leader` (SIGSTOP of the leader node),
  `isolate-leader` (the leader cut off from the majority by nftables, clients still reaching
  it; needs root and nft, else skipped with the reason): the KV chaos's own faults
  (loadtest/chaos/faults.py `apply_fault`), each held `NODE_FAULT_HOLD_S`.

The verdict (`judge`), from the clients' records. "Overlap according to the store" means: the
protected resource (FENCE_KEY, see lock_client.py) accepted a write from a tenure after it had
accepted one from a later tenure. A holder paused past its TTL still *believes* it holds the
lock when it wakes, so beliefs overlap by design; the store must refuse its write:

* every fencing token (LockIndex) was acquired by one session only;
* the fenced writes the store accepted, in commit order, carry non-decreasing tokens;
* each paused holder's first write sent after waking (its old token) was refused, when another
  session took the lock during the pause: `late_writes` says, per pause, refused, accepted (a
  violation) or none (it saw its loss before writing: no evidence from that pause, reported).
  A write sent before the pause and answered after it is not late: it committed before the
  pause, and the token order judges it;
* per fault: how long the lock was unavailable (the longest time without an accepted fenced
  write by a client that was not paused, from the fault until the next fault or the end).

`--unfenced` makes the resource skip its token check (a demonstration: the verdict must FAIL).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request

from loadtest.chaos.faults import Network, apply_fault, unsupported
from loadtest.harness.cluster import Cluster

LOCK_KEY = "chaos/lock"
FENCE_KEY = "chaos/fence"
MAX_PAUSE_TTLS = 3.0
NODE_FAULT_HOLD_S = 3.0
# Seconds each fault is given before the next one: its hold, a new election, the lock in use again.
ALLOWANCE_S = {"kill-leader": 7, "kill-follower": 5, "pause-leader": 7, "isolate-leader": 7}
CYCLE = ("pause-holder", "kill-leader", "kill-follower", "pause-leader", "isolate-leader")


def lock_schedule(duration_s: float, ttl_s: float = 10.0) -> list[tuple[float, str]]:
    """Every kind of fault in turn (CYCLE), from 3 s in, each given its allowance before the next."""
    faults: list[tuple[float, str]] = []
    at = 3.0
    for i in range(1000):  # bounded: a schedule of an absurd --duration still ends
        kind = CYCLE[i % len(CYCLE)]
        allowance = ttl_s + 8 if kind == "pause-holder" else ALLOWANCE_S[kind]
        if at + allowance > duration_s:
            break
        faults.append((at, kind))
        at += allowance
    return faults


def summary(verdict: dict) -> str:
    worst: dict[str, float] = {}
    for u in verdict["unavailability"]:
        if u["unavailable_s"] is not None:
            worst[u["kind"]] = max(worst.get(u["kind"], 0.0), u["unavailable_s"])
    return (f"lock chaos: {'PASS' if verdict['ok'] else 'FAIL'}: {verdict['tenures']} tenures, "
            f"{verdict['accepted_writes']} fenced writes accepted{' in token order' if verdict['ok'] else ''}, "
            f"{verdict['stale_token_refusals']} stale-token writes refused; unavailable at most "
            + (", ".join(f"{s:.1f}s after {k}" for k, s in sorted(worst.items())) or "-")
            + ("; skipped: " + ", ".join(sorted(verdict["skipped"])) if verdict.get("skipped") else "")
            + ("; " + "; ".join(verdict["violations"]) if verdict["violations"] else ""))


def run_lock_workload(cluster: Cluster, out_dir: str, duration_s: float, faults: list[tuple[float, str]],
                      clients: int = 3, ttl_s: float = 10.0, net: Network | None = None,
                      fenced: bool = True, seed: int = 1) -> dict:
    """Run the contenders for `duration_s` with `faults` [(seconds into the run, kind)], then
    judge. Returns {"events", "faults", "skipped", "verdict"}."""
    net = net or Network(why_not="no network lab")
    rng = random.Random(seed)
    addrs = ",".join(n.http for n in cluster.nodes)
    paths = [os.path.join(out_dir, f"lock-client-{i}.jsonl") for i in range(clients)]
    for path in paths:  # a rerun into the same --out starts afresh
        if os.path.exists(path):
            os.remove(path)
    procs = [subprocess.Popen([sys.executable, "-m", "loadtest.chaos.lock_client", f"c{i}", addrs, LOCK_KEY,
                               FENCE_KEY, paths[i], str(duration_s), str(ttl_s), "fenced" if fenced else "unfenced"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(clients)]
    t0 = time.time()
    done: list[dict] = []
    skipped: dict[str, str] = {}
    try:
        for at_s, kind in sorted(faults):
            why = unsupported(kind, cluster, net) if kind != "pause-holder" else None
            if why:
                skipped[kind] = why
                continue
            time.sleep(max(0.0, t0 + at_s - time.time()))
            print(f"chaos: t={time.time() - t0:5.1f}s  {kind}", file=sys.stderr, flush=True)
            done.append(_apply(kind, cluster, procs, paths, ttl_s, net, rng))
        for proc in procs:
            proc.wait(max(1.0, t0 + duration_s + 30 - time.time()))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait(10)
        net.heal()
        for node in cluster.nodes:
            node.signal(signal.SIGCONT)
            if not node.alive():
                node.start()
    events = sorted((e for path in paths for e in _read_events(path)), key=lambda e: e["t"])
    verdict = judge(events, done, end=t0 + duration_s)
    verdict["skipped"] = skipped
    return {"t0": t0, "events": events, "faults": done, "skipped": skipped, "verdict": verdict}


def _apply(kind: str, cluster: Cluster, procs: list[subprocess.Popen], paths: list[str], ttl_s: float,
           net: Network, rng: random.Random) -> dict:
    started = time.time()
    if kind != "pause-holder":
        event = apply_fault(kind, cluster, NODE_FAULT_HOLD_S, rng, net)
        return {"t": started, "healed": time.time(), "kind": kind, "target": ",".join(event.nodes)}
    for _ in range(5):  # bounded: a holder that moves on to a new tenure as it is paused is let go
        session = _holder_session(cluster)
        acquired = [e for p in paths for e in _read_events(p) if e["ev"] == "acquired"]
        owner = next((e for e in acquired if e["session"] == session), None)
        if session is None or owner is None:
            time.sleep(0.5)
            continue
        i = int(owner["client"][1:])
        _just_after_a_write(paths[i], owner["token"])
        procs[i].send_signal(signal.SIGSTOP)
        if _holder_session(cluster) == session:
            break
        procs[i].send_signal(signal.SIGCONT)  # it released the lock (and perhaps took it anew) first
    else:
        return {"t": started, "healed": started, "kind": kind, "target": None, "skipped": "nobody held the lock"}
    deadline = time.monotonic() + MAX_PAUSE_TTLS * ttl_s
    while time.monotonic() < deadline and _holder_session(cluster) in (session, None):
        time.sleep(0.2)  # the poll interval while the holder is paused
    taken_over = _holder_session(cluster) not in (session, None)
    time.sleep(1.0)  # the new holder makes its first fenced writes
    healed = time.time()  # before the SIGCONT: the woken holder may send its write before we read the clock
    procs[i].send_signal(signal.SIGCONT)
    return {"t": started, "healed": healed, "kind": kind, "target": owner["client"], "token": owner["token"],
            "taken_over": taken_over}


def _just_after_a_write(path: str, token: int, within_s: float = 5.0) -> None:
    """Wait (at most `within_s`) until the holder records a write with `token`, and 50 ms more:
    the pause then finds it in its sleep between writes (its renewal, when one is due, done),
    so that it wakes up to write once more with its old token. A pause inside an HTTP call
    would wake it to that call's answer and, at its next renewal, a 404: no late write."""
    seen = len(_read_events(path))
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        new = _read_events(path)[seen:]
        if any(e["ev"] == "write" and e["token"] == token for e in new):
            break
        seen += len(new)
        time.sleep(0.005)
    time.sleep(0.05)


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
            return [json.loads(line) for line in f if line.endswith("\n")]  # not a line being written
    except FileNotFoundError:
        return []


def _late_write(events: list[dict], fault: dict) -> str:
    """What the paused holder's first write with its old token, after waking, came to."""
    late = next((e for e in events if e.get("sent", e["t"]) >= fault["healed"] and e["client"] == fault["target"]
                 and e["ev"] in ("write", "lost", "released") and e["token"] == fault["token"]), None)
    if late is None or late["ev"] != "write":
        return "none"
    if late["ok"]:
        return "accepted"
    return "refused" if late.get("why") == "stale token" else f"failed ({late.get('why')})"


def judge(events: list[dict], faults: list[dict], end: float | None = None) -> dict:
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
    late_writes = []
    for fault in faults:
        if fault["kind"] == "pause-holder" and fault.get("taken_over"):
            outcome = _late_write(events, fault)
            late_writes.append({"client": fault["target"], "token": fault["token"], "late_write": outcome})
            if outcome == "accepted":
                violations.append(f"{fault['target']} woke up from a pause and its write with the old token "
                                  f"{fault['token']} was accepted")
    by_time = sorted(accepted, key=lambda e: e["t"])
    unavailable = []
    for i, fault in enumerate(faults):
        paused = fault["target"] if fault["kind"] == "pause-holder" else None
        until = faults[i + 1]["t"] if i + 1 < len(faults) else (end or float("inf"))
        oks = [fault["t"]] + [e["t"] for e in by_time if fault["t"] < e["t"] < until and e["client"] != paused]
        gap = max((b - a for a, b in zip(oks, oks[1:], strict=False)), default=None)
        unavailable.append({"kind": fault["kind"], "target": fault.get("target"),
                            "unavailable_s": round(gap, 2) if gap is not None else None})
    return {"ok": not violations, "violations": violations[:20], "tenures": len(owner_of),
            "accepted_writes": len(accepted), "stale_token_refusals": len(stale), "late_writes": late_writes,
            "highest_token": max(owner_of, default=0), "unavailability": unavailable}
