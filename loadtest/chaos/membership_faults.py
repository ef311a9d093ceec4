"""Membership faults for `raftkv chaos`: a node replaced, the cluster grown and shrunk, the
leader removed, a planned leader restart. Each is carried out as an operator would, through
the HTTP operator API and `serve --join`, while the recorded workload runs.

A replaced node takes the dead node's place in `cluster.nodes` (same id, so reports stay
readable); grow-shrink adds nodes and removes them again, leaving the cluster as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.error
import urllib.parse
import urllib.request

from loadtest.harness.cluster import HOST, Cluster, NodeProcess, free_ports

MEMBERSHIP_FAULTS = {"replace-disk", "replace-node", "grow-shrink", "remove-leader", "restart-leader"}
PROMOTION_TIMEOUT_S = 120.0
PORT_ATTEMPTS = 3


def _call(node: NodeProcess, method: str, path: str, query: dict) -> tuple[int, str]:
    url = f"{node.url}{path}?{urllib.parse.urlencode(query)}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=20) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def voters(node: NodeProcess) -> set[str]:
    status, body = _call(node, "GET", "/v1/operator/raft/configuration", {"stale": ""})
    if status != 200:
        return set()
    return {s["Address"] for s in json.loads(body)["Servers"] if s["Voter"]}


def remove_member(cluster: Cluster, node_id: str) -> None:
    """Remove through any live node, retrying while another change is in flight."""
    deadline = time.monotonic() + 30
    while True:
        via = cluster.leader(timeout=30)
        status, body = _call(via, "DELETE", "/v1/operator/raft/peer", {"id": node_id, "force": "true"})
        if status in (200, 404):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"removing {node_id}: HTTP {status} {body.strip()}")
        time.sleep(0.5)


def join_node(cluster: Cluster, node: NodeProcess, new_ports: bool = False) -> None:
    """Start `node` (empty folder) with --join and wait until every live node has it as a voter.
    `new_ports`: its ports came from free_ports, free when picked but not held: another process
    may take one before the node binds it, and such a start is tried again at other ports."""
    others = [n for n in cluster.nodes if n is not node and n.alive()]
    node.extra_args = [*_without_join(node.extra_args), "--join", ",".join(n.http for n in others)]
    node.peers = []
    for attempt in range(PORT_ATTEMPTS):
        node.start()
        why = _wait_voter(node, others)
        if not why:
            break
        if not (new_ports and "cannot listen" in why and attempt + 1 < PORT_ATTEMPTS):
            # Left out, so that the run can still heal and judge the cluster without it.
            node.stop()
            cluster.nodes.remove(node)
            raise RuntimeError(f"{node.node_id} {why} (left out of the cluster)")
        shutil.rmtree(node.data_dir, ignore_errors=True)
        node.raft, node.http = (f"{HOST}:{p}" for p in free_ports(2))
    node.extra_args = _without_join(node.extra_args)  # its restarts need no --join


def _wait_voter(node: NodeProcess, others: list[NodeProcess]) -> str:
    """Empty once every live node has `node` as a voter; else what went wrong, in a few words."""
    deadline = time.monotonic() + PROMOTION_TIMEOUT_S
    while not all(node.raft in voters(n) for n in [*others, node]):
        if time.monotonic() > deadline:
            return f"did not become a voter within {PROMOTION_TIMEOUT_S:g}s"
        if not node.alive():
            return f"exited while joining: {_last_line(node.log_path)}"
        time.sleep(0.2)
    return ""


def _last_line(path: str) -> str:
    """The node's last warning or error (what made it stop), else its last line."""
    try:
        with open(path, errors="replace") as f:
            lines = f.read()[-4000:].strip().splitlines()
    except OSError as exc:
        return f"(no log: {exc.strerror})"
    told = [line for line in lines if " INFO " not in line and not line.startswith("--- start")]
    return (told or lines or ["(empty log)"])[-1]


def _without_join(args: list[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--join":
            skip = True
            continue
        out.append(a)
    return out


def _fresh_process(cluster: Cluster, like: NodeProcess, new_address: bool) -> NodeProcess:
    if new_address:
        raft, http = (f"{HOST}:{p}" for p in free_ports(2))
    else:
        raft, http = like.raft, like.http
    return NodeProcess(like.node_id, raft, http, like.data_dir, like.log_path, [], _without_join(like.extra_args),
                       list(like.prefix))


def replace(cluster: Cluster, victim: NodeProcess, new_address: bool) -> NodeProcess:
    """SIGKILL `victim` for good, empty its data folder, remove it, start its replacement with
    --join (at the same address: a replaced disk; at a new one: a replaced machine)."""
    victim.kill()
    shutil.rmtree(victim.data_dir, ignore_errors=True)
    remove_member(cluster, victim.node_id)
    replacement = _fresh_process(cluster, victim, new_address)
    cluster.nodes[cluster.nodes.index(victim)] = replacement
    join_node(cluster, replacement, new_ports=new_address)
    return replacement


def grow_shrink(cluster: Cluster, count: int = 2, hold_s: float = 2.0) -> list[str]:
    """Add `count` nodes (3 -> 5), hold, then remove them again."""
    added = []
    for i in range(count):
        raft, http = (f"{HOST}:{p}" for p in free_ports(2))
        node_id = f"g{int(time.time() * 1000) % 100000}-{i}"
        node = NodeProcess(node_id, raft, http, os.path.join(cluster.root, node_id),
                           os.path.join(cluster.root, f"{node_id}.log"), [], _without_join(cluster.nodes[0].extra_args))
        cluster.nodes.append(node)
        join_node(cluster, node, new_ports=True)
        added.append(node)
    time.sleep(hold_s)
    for node in added:
        remove_member(cluster, node.node_id)
        deadline = time.monotonic() + 20
        while node.alive() and time.monotonic() < deadline:  # a removed node stops by itself
            time.sleep(0.1)
        node.stop()
        cluster.nodes.remove(node)
    return [n.node_id for n in added]


def apply_membership_fault(kind: str, cluster: Cluster, leader: NodeProcess, followers: list[NodeProcess],
                           hold_s: float, rng) -> list[str]:
    """Carry out one membership fault; the ids of the nodes it touched."""
    if kind == "replace-disk":
        return [replace(cluster, rng.choice(followers), new_address=False).node_id]
    if kind == "replace-node":
        return [replace(cluster, rng.choice(followers), new_address=True).node_id]
    if kind == "remove-leader":
        # The leader hands over, is removed, stops by itself; it comes back empty with --join.
        remove_member(cluster, leader.node_id)
        deadline = time.monotonic() + 20
        while leader.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        leader.stop()
        shutil.rmtree(leader.data_dir, ignore_errors=True)
        back = _fresh_process(cluster, leader, new_address=False)
        cluster.nodes[cluster.nodes.index(leader)] = back
        time.sleep(hold_s)
        join_node(cluster, back)
        return [leader.node_id]
    if kind == "restart-leader":  # planned: SIGTERM hands leadership over before the exit
        leader.signal(signal.SIGTERM)
        leader.proc.wait(30)
        time.sleep(hold_s)
        leader.start()
        return [leader.node_id]
    if kind == "grow-shrink":
        return grow_shrink(cluster, hold_s=hold_s)
    raise ValueError(f"unknown membership fault {kind!r}")
