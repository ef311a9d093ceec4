"""Process faults on a local cluster: each one is applied, held, healed, and recorded.

A fault returns a `FaultEvent` with its start, the time it was healed and the nodes it hit;
`raftkv chaos` runs a schedule of them while a recorded workload runs.
"""

from __future__ import annotations

import random
import signal
import time
from dataclasses import asdict, dataclass, field

from loadtest.chaos.membership_faults import MEMBERSHIP_FAULTS, apply_membership_fault
from loadtest.harness.cluster import Cluster, NodeProcess


@dataclass
class FaultEvent:
    kind: str
    started: float  # monotonic time the fault was injected
    healed: float = 0.0
    nodes: list[str] = field(default_factory=list)
    old_leader: str | None = None

    def to_json(self, t0: float) -> dict:
        doc = asdict(self)
        doc["started"] = round(self.started - t0, 3)
        doc["healed"] = round(self.healed - t0, 3)
        return doc


def _kill_and_restart(cluster: Cluster, victims: list[NodeProcess], hold_s: float) -> None:
    for n in victims:
        n.kill()
    time.sleep(hold_s)
    for n in victims:
        n.start()


@dataclass
class Network:
    """The means for network faults: a namespace lab (partitions) and a relay (latency, loss)."""

    lab: object = None  # loadtest.chaos.network.netlab.NetLab, keyed by node id
    relay: object = None  # loadtest.chaos.network.relay.Relay, keyed by advertised Raft address
    why_not: str = ""  # why partitions are unavailable, for the report

    def heal(self) -> None:
        if self.lab is not None:
            self.lab.heal()
        if self.relay is not None:
            self.relay.clear()


PARTITIONS = {"isolate-leader", "isolate-follower", "split-leader-minority", "cut-leader-link"}
LINK_FAULTS = {"slow-links": {"delay_ms": 60, "jitter_ms": 40}, "lossy-links": {"loss": 0.2}}
KILLS = {"kill-leader", "kill-follower", "kill-majority", "kill-all"}
PAUSES = {"pause-leader", "pause-follower"}


def unsupported(kind: str, cluster: Cluster, net: Network) -> str | None:
    """Why this fault cannot be applied here, or None."""
    if kind in PARTITIONS and net.lab is None:
        return f"partitions unavailable: {net.why_not or 'no network lab'}"
    if kind in LINK_FAULTS and net.relay is None:
        return "latency and loss need the relay (nodes started by raftkv chaos)"
    if kind in MEMBERSHIP_FAULTS and (net.lab is not None or net.relay is not None
                                      or getattr(cluster.nodes[0], "can", None) is not None):
        return "membership faults need plain local nodes (no network lab, relay or attached nodes)"
    can = getattr(cluster.nodes[0], "can", None)  # attached nodes run what their config gives
    if can is not None:
        needs = {"rolling-restart": ("start",)}.get(kind) or (
            ("kill", "start") if kind in KILLS else ("pause", "resume") if kind in PAUSES else ())
        if not all(n.can(*needs) for n in cluster.nodes):
            return f"the node config has no {'/'.join(needs)} command for every node"
    return None


def _network_fault(kind: str, cluster: Cluster, net: Network, leader: NodeProcess, followers: list[NodeProcess],
                   hold_s: float, rng: random.Random, event: FaultEvent) -> FaultEvent:
    if kind in LINK_FAULTS:
        event.nodes = [n.node_id for n in cluster.nodes]
        net.relay.set_all(**LINK_FAULTS[kind])
    elif kind in ("isolate-leader", "isolate-follower"):
        victim = leader if kind == "isolate-leader" else rng.choice(followers)
        event.nodes = [victim.node_id]
        net.lab.isolate(victim.node_id)  # clients still reach it: they must not be fooled by it
    elif kind == "split-leader-minority":
        minority = [leader] + rng.sample(followers, (len(cluster.nodes) - 1) // 2 - 1)
        event.nodes = [n.node_id for n in minority]
        net.lab.split(event.nodes, [n.node_id for n in cluster.nodes if n not in minority])
    elif kind == "cut-leader-link":  # non-transitive: the other followers still see both ends
        victim = rng.choice(followers)
        event.nodes = [leader.node_id, victim.node_id]
        net.lab.cut(leader.node_id, victim.node_id)
    time.sleep(hold_s)
    net.heal()
    event.healed = time.monotonic()
    return event


def apply_fault(kind: str, cluster: Cluster, hold_s: float, rng: random.Random,
                net: Network | None = None) -> FaultEvent:
    leader = cluster.leader(timeout=30)
    followers = [n for n in cluster.nodes if n is not leader]
    event = FaultEvent(kind, time.monotonic(), old_leader=leader.node_id)
    if kind in PARTITIONS or kind in LINK_FAULTS:
        return _network_fault(kind, cluster, net or Network(), leader, followers, hold_s, rng, event)
    if kind in MEMBERSHIP_FAULTS:
        event.nodes = apply_membership_fault(kind, cluster, leader, followers, hold_s, rng)
        event.healed = time.monotonic()
        return event
    if kind == "kill-leader":
        victims = [leader]
    elif kind == "kill-follower":
        victims = [rng.choice(followers)]
    elif kind == "kill-majority":
        victims = [leader] + rng.sample(followers, len(cluster.nodes) // 2)
    elif kind == "kill-all":
        victims = list(cluster.nodes)
    elif kind in ("pause-leader", "pause-follower"):
        victim = leader if kind == "pause-leader" else rng.choice(followers)
        event.nodes = [victim.node_id]
        victim.signal(signal.SIGSTOP)  # a GC stall or a frozen VM
        time.sleep(hold_s)
        victim.signal(signal.SIGCONT)
        event.healed = time.monotonic()
        return event
    elif kind == "rolling-restart":
        event.nodes = [n.node_id for n in cluster.nodes]
        for n in followers + [leader]:
            n.stop()  # SIGTERM: a clean restart, one node at a time
            n.start()
            cluster.leader(timeout=30)
        event.healed = time.monotonic()
        return event
    else:
        raise ValueError(f"unknown fault {kind!r}")
    event.nodes = [n.node_id for n in victims]
    _kill_and_restart(cluster, victims, hold_s)
    event.healed = time.monotonic()
    return event


SCHEDULES = {
    # (seconds after the previous fault healed, fault, seconds it is held)
    "short": [(6, "kill-leader", 1.5), (6, "pause-leader", 2.5), (6, "kill-follower", 1.5), (6, "kill-all", 1.0),
              (6, "isolate-leader", 2.5), (6, "lossy-links", 3)],
    "full": [(8, "kill-leader", 2), (8, "kill-follower", 2), (8, "pause-leader", 3), (8, "kill-majority", 3),
             (8, "pause-follower", 3), (8, "rolling-restart", 0), (8, "kill-all", 2), (8, "kill-leader", 2),
             (8, "isolate-leader", 3), (8, "isolate-follower", 3), (8, "cut-leader-link", 4),
             (8, "split-leader-minority", 3), (8, "slow-links", 5), (8, "lossy-links", 5)],
    "network": [(6, "isolate-leader", 3), (6, "cut-leader-link", 4), (6, "isolate-follower", 3),
                (6, "slow-links", 4), (6, "lossy-links", 4)],
    # ten leader kills: the failover figures (median and worst unavailability)
    "failover": [(5, "kill-leader", 1.5)] * 10,
    # the same ten leader restarts, planned (SIGTERM: leadership handed over first)
    "planned-restarts": [(5, "restart-leader", 1.5)] * 10,
    # membership: a disk replaced, a machine replaced, 3 -> 5 -> 3, the leader removed, a planned restart
    "replace": [(3, "replace-disk", 1), (3, "replace-node", 1), (3, "grow-shrink", 2), (3, "remove-leader", 1),
                (3, "restart-leader", 1.5)],
}
HOLDS = {"kill-leader": 2, "kill-follower": 2, "kill-majority": 3, "kill-all": 2, "pause-leader": 3,
         "pause-follower": 3, "rolling-restart": 0, "isolate-leader": 3, "isolate-follower": 3,
         "cut-leader-link": 4, "split-leader-minority": 3, "slow-links": 5, "lossy-links": 5,
         "replace-disk": 1, "replace-node": 1, "grow-shrink": 2, "remove-leader": 1, "restart-leader": 1.5}


# Seconds a fault takes beyond its hold (joins, promotions, restarts), for planning a run.
EXTRA_S = {"replace-disk": 8, "replace-node": 8, "grow-shrink": 16, "remove-leader": 10, "restart-leader": 3,
           "rolling-restart": 10}


def mixed_schedule(duration_s: float, rng: random.Random, gap_s: float = 8.0) -> list[tuple[float, str, float]]:
    """Faults of every kind in random order, planned past `duration_s` (`--schedule mixed`):
    faults take less than their allowance, and the experiment stops injecting when its time
    is up, so the faults last the whole run (a plan that fitted exactly ended 14 % early)."""
    out, used = [], 0.0
    while used < duration_s:
        kind = rng.choice(sorted(HOLDS))
        used += gap_s + HOLDS[kind]
        out.append((gap_s, kind, HOLDS[kind]))
    return out
