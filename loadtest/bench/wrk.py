"""The compiled load generator: Debian's `wrk` with `wrk_kv.lua`, over all nodes of a cluster.

wrk sends every connection of a process to one address, so a point of C clients over N
nodes runs one wrk process per node at once, with the connections split between them (11,
11 and 10 for 32 over 3). With fewer clients than nodes (1 client), the nodes take turns:
N runs one after the other, each of duration/N on one node, so that every node answers its
share of the requests as with the Python generator, which picks a node per request. Each
process prints its counts and quantiles (the Lua `done`); `merge` adds them up into a point
shaped like `sweep.measure_point`'s, with the CPU (user + system) every wrk process used,
read from wait4 when it exits. wrk measures time in whole seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wrk_kv.lua")
MARK = "WRK_JSON "


def available() -> bool:
    return shutil.which("wrk") is not None


def parse_output(text: str) -> dict:
    """The figures of one wrk process, from its stdout."""
    for line in text.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise ValueError(f"no {MARK.strip()} line in wrk's output: {text.strip()[-300:]!r}")


def plan(nodes: list[str], clients: int, duration: float) -> list[list[tuple[str, int, int]]]:
    """Rounds of (node, connections, seconds) run at once; the rounds run one after the other."""
    if clients >= len(nodes):
        seconds = max(1, round(duration))
        shares = [clients // len(nodes) + (1 if i < clients % len(nodes) else 0) for i in range(len(nodes))]
        return [[(node, n, seconds) for node, n in zip(nodes, shares, strict=True)]]
    seconds = max(1, round(duration / len(nodes)))
    return [[(node, clients, seconds)] for node in nodes]


def quantile(parts: list[dict], fraction: float) -> int | None:
    """The merged latency at `fraction` (0..1) of several processes' quantile grids, each grid
    point standing for its share of that process's requests."""
    samples = []
    for p in parts:
        previous = 0.0
        for percent, us in p.get("quantiles", []):
            samples.append((us, p["requests"] * (percent - previous) / 100))
            previous = percent
    total = sum(w for _, w in samples)
    if total <= 0:
        return None
    samples.sort()
    seen = 0.0
    for us, weight in samples:
        seen += weight
        if seen >= fraction * total * (1 - 1e-9):
            return us
    return samples[-1][0]


def merge(workload: str, clients: int, rounds: list[list[dict]], cpu_s: float) -> dict:
    """One point from the processes of every round (each a parsed WRK_JSON with its `seconds`)."""
    parts = [p for r in rounds for p in r]
    ok = sum(p["requests"] - p["non2xx"] for p in parts)
    errors = sum(p["non2xx"] + sum(v for k, v in p["errors"].items() if k != "status") for p in parts)
    seconds = sum(max(p["duration_us"] for p in r) / 1e6 for r in rounds if r)

    def ms(fraction: float) -> float | None:
        us = quantile(parts, fraction)
        return None if us is None else round(us / 1000, 2)

    return {"generator": "wrk", "workload": workload, "concurrency": clients,
            "ops_per_s": round(ok / seconds, 1) if seconds else 0.0,
            "p50_ms": ms(0.50), "p90_ms": ms(0.90), "p99_ms": ms(0.99), "max_ms": ms(1.0),
            "requests": ok, "errors": errors, "seconds": round(seconds, 3), **cpu_figures(cpu_s, seconds, ok),
            # each wrk process as it reported itself: how the load and the latency split over the nodes
            "processes": [{k: p.get(k) for k in ("node", "connections", "requests", "non2xx", "p50_us", "p99_us",
                                                 "max_us", "duration_us")} for p in parts]}


def cpu_figures(cpu_s: float, seconds: float, ops: int) -> dict:
    """The load generator's CPU over a run, as the JSON and the tables give it."""
    return {"generator_cpu_s": round(cpu_s, 3), "generator_cores": round(cpu_s / seconds, 3) if seconds else None,
            "generator_us_per_op": round(1e6 * cpu_s / ops, 1) if ops else None}


def _run_round(kind: str, workload: str, procs: list[tuple[str, int, int]], keyspace: int, key_bytes: int,
               value_bytes: int, seed: int, tmp: str) -> tuple[list[dict], float]:
    started = []
    for i, (node, connections, seconds) in enumerate(procs):
        out = open(os.path.join(tmp, f"wrk-{seed}-{i}.out"), "w+")  # noqa: SIM115 - closed below
        url = node if "://" in node else f"http://{node}"
        proc = subprocess.Popen(
            ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s", "-s", SCRIPT, url,
             "--", kind, workload, str(keyspace), str(key_bytes), str(value_bytes), str(seed * 101 + i)],
            stdout=out, stderr=subprocess.STDOUT)
        started.append((proc, out, seconds))
    cpu_s, parts = 0.0, []
    for proc, out, seconds in started:
        status, usage = _wait(proc, seconds + 30)
        cpu_s += usage.ru_utime + usage.ru_stime
        out.seek(0)
        text = out.read()
        out.close()
        if status != 0:
            raise RuntimeError(f"wrk exited with {status}: {text.strip()[-300:]}")
        parts.append(parse_output(text))
    for part, (node, connections, _) in zip(parts, procs, strict=True):
        part.update(node=node, connections=connections)
    return parts, cpu_s


def _wait(proc: subprocess.Popen, timeout: float):
    """wait4 the process (its rusage is the figure wanted), killing it past `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage
        if time.monotonic() > deadline:
            proc.send_signal(signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = -9
            return -9, usage
        time.sleep(0.05)


def measure_point(kind: str, nodes: list[str], workload: str, clients: int, warmup: float, duration: float,
                  keyspace: int = 10_000, key_bytes: int = 16, value_bytes: int = 128, seed: int = 1) -> dict:
    """`kind`: raftkv or etcd; `nodes`: HOST:PORT of every node. A warm-up run first (not measured)."""
    with tempfile.TemporaryDirectory(prefix="raftkv-wrk-") as tmp:
        if warmup > 0:
            for r in plan(nodes, clients, warmup):
                _run_round(kind, workload, r, keyspace, key_bytes, value_bytes, seed + 7919, tmp)
        rounds, cpu_s = [], 0.0
        for i, r in enumerate(plan(nodes, clients, duration)):
            parts, cpu = _run_round(kind, workload, r, keyspace, key_bytes, value_bytes, seed * 13 + i, tmp)
            rounds.append(parts)
            cpu_s += cpu
    return merge(workload, clients, rounds, cpu_s)
