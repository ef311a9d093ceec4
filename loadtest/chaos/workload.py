"""A recorded client workload: reads, writes and check-and-sets on a few keys, spread over all
nodes, each operation logged with its invocation and completion time and its outcome.

Used by the linearizability tests and by `raftkv chaos`. Outcomes follow the HTTP contract:
a 200 is a result; a 503 whose reason starts with "outcome unknown", a timeout or a broken
connection after the request was sent leave a write's outcome unknown; any other error means
nothing was applied and the operation is dropped from the history.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import time
from dataclasses import dataclass, field

import aiohttp

from api.http_client import client_session
from loadtest.checker.history import CAS, READ, WRITE, Operation

READ_MODES = ("default", "consistent")


@dataclass
class WorkloadConfig:
    nodes: list[str]  # HTTP host:port of every node
    duration_s: float = 10.0
    clients: int = 6
    keys: int = 3
    request_timeout_s: float = 3.0
    read_modes: tuple[str, ...] = READ_MODES
    max_ops: int = 100_000  # bound on the whole run, whatever the duration
    stale_share: float = 0.0  # share of operations that are stale reads (kept out of the checked history)
    unique_share: float = 0.0  # share that write a never-reused key (for the lost-write check)


@dataclass
class WorkloadResult:
    operations: list[Operation] = field(default_factory=list)  # the history to check
    stale_reads: list[Operation] = field(default_factory=list)  # not part of the linearizable history
    dropped: int = 0  # certainly failed, left out
    drop_reasons: dict[str, int] = field(default_factory=dict)  # first line of each refusal, counted
    counts: dict[str, int] = field(default_factory=dict)
    # every operation: (completion time, kind, outcome ok|fail|unknown, node), for timelines
    timeline: list[tuple[float, str, str, str]] = field(default_factory=list)
    unique_acked: dict[str, str] = field(default_factory=dict)  # key -> value, acknowledged unique writes


async def run_workload(cfg: WorkloadConfig, stale_nodes: list[str] | None = None) -> WorkloadResult:
    result = WorkloadResult()
    deadline = time.monotonic() + cfg.duration_s
    timeout = aiohttp.ClientTimeout(total=cfg.request_timeout_s)
    budget = [cfg.max_ops]
    async with client_session(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(
            _client(f"c{i}", i % len(cfg.nodes), session, cfg, deadline, result, budget, random.Random(i), stale_nodes)
            for i in range(cfg.clients)
        ))
    return result


async def _client(name, home, session, cfg, deadline, result, budget, rng, stale_nodes) -> None:
    seen: dict[str, tuple[object, int]] = {}  # key -> (value, ModifyIndex) last read by this client
    seq = 0
    # Each client talks to one node and moves to the next after a failure, as etcd's and
    # Consul's clients do. (Picking a random node per request made every client end up
    # waiting on the one stuck node, which measured the clients, not the cluster.)
    while time.monotonic() < deadline and budget[0] > 0:
        budget[0] -= 1
        seq += 1
        key = f"lin/k{rng.randrange(cfg.keys)}"
        node = cfg.nodes[home]
        roll = rng.random()
        label = None
        if stale_nodes:
            label = "read-stale"
            op = await _read(session, rng.choice(stale_nodes), key, "stale", name)
        elif roll < cfg.stale_share:
            label = "read-stale"
            op = await _read(session, node, key, "stale", name)
        elif roll < cfg.stale_share + cfg.unique_share:
            label = "unique-write"
            key = f"chaos/u/{name}-{seq}"
            op = await _write(session, node, key, f"{name}-{seq}", name, result)
            if op is not None and not op.unknown:
                result.unique_acked[key] = op.value  # must be readable after healing
        elif roll < 0.5:
            mode = rng.choice(cfg.read_modes)
            label = f"read-{mode}"
            op = await _read(session, node, key, mode, name)
        elif roll < 0.8 or key not in seen:
            label = "write"
            op = await _write(session, node, key, f"{name}-{seq}", name, result)
        else:
            label = "cas"
            value, index = seen[key]
            op = await _write(session, node, key, f"{name}-{seq}", name, result, cas=(index, value))
        kind = op.meta.get("outcome", "dropped") if op else "dropped"
        result.counts[kind] = result.counts.get(kind, 0) + 1
        _record(result, op, label, node)
        if op is None or op.unknown:
            home = (home + 1) % len(cfg.nodes)
        if op is None:
            result.dropped += 1
            continue
        if label == "unique-write":
            continue
        if op.kind == READ and op.meta.get("mode") == "stale":
            result.stale_reads.append(op)
        else:
            result.operations.append(op)
        if op.kind == READ and not op.unknown:
            seen[key] = (op.value, op.meta.get("index", 0))
        if op.kind == READ and op.value is None:
            seen[key] = (None, 0)


def _record(result: WorkloadResult, op: Operation | None, label: str, node: str) -> None:
    now = time.monotonic()
    if op is None:
        result.timeline.append((now, label, "fail", node))
        return
    kind = label
    outcome = "unknown" if op.unknown else "ok"
    result.timeline.append((now if op.unknown else op.ret, kind, outcome, op.meta.get("node", node)))


async def _read(session, node, key, mode, client) -> Operation | None:
    params = {} if mode == "default" else {mode: ""}
    call = time.monotonic()
    try:
        async with session.get(f"http://{node}/v1/kv/{key}", params=params) as resp:
            body = await resp.read()
            ret = time.monotonic()
            if resp.status == 404:
                value, index = None, 0
            elif resp.status == 200:
                entry = json.loads(body)[0]
                value = base64.b64decode(entry["Value"]).decode() if entry["Value"] else ""
                index = entry["ModifyIndex"]
            else:
                return None
    except (aiohttp.ClientError, TimeoutError):
        return None  # a read that did not answer has no effect
    return Operation(READ, key, call, ret, value, client=client,
                     meta={"node": node, "mode": mode, "index": index, "outcome": "ok"})


async def _write(session, node, key, value, client, result: WorkloadResult, cas=None) -> Operation | None:
    params = {}
    kind, expected = WRITE, None
    if cas is not None:
        index, expected = cas
        params["cas"] = str(index)
        kind = CAS
    call = time.monotonic()
    op = Operation(kind, key, call, math.inf, value, expected, None, client, {"node": node, "outcome": "unknown"})
    try:
        async with session.put(f"http://{node}/v1/kv/{key}", data=value.encode(), params=params) as resp:
            body = await resp.read()
            if resp.status == 200:
                op.ret = time.monotonic()
                op.ok = json.loads(body) is True
                op.meta["outcome"] = "ok"
                if kind == WRITE and not op.ok:
                    raise AssertionError(f"a plain PUT answered false: {body!r}")
                return op
            if resp.status == 503 and body.startswith(b"outcome unknown"):
                return op
            reason = f"{resp.status} {body.decode('utf-8', 'replace').strip()[:60]}"
            result.drop_reasons[reason] = result.drop_reasons.get(reason, 0) + 1
            return None  # refused before reaching the log: changed nothing
    except aiohttp.ClientConnectorError:
        return None  # never connected: nothing sent
    except (aiohttp.ClientError, TimeoutError):
        return op  # sent, no answer: may or may not have been applied
