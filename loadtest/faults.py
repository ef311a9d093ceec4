"""Process faults on a local cluster: each one is applied, held, healed, and recorded.

A fault returns a `FaultEvent` with its start, the time it was healed and the nodes it hit;
`raftkv chaos` runs a schedule of them while a recorded workload runs.
"""

from __future__ import annotations

import random
import signal
import time
from dataclasses import asdict, dataclass, field

from loadtest.cluster import Cluster, NodeProcess


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


def apply_fault(kind: str, cluster: Cluster, hold_s: float, rng: random.Random) -> FaultEvent:
    leader = cluster.leader(timeout=30)
    followers = [n for n in cluster.nodes if n is not leader]
    event = FaultEvent(kind, time.monotonic(), old_leader=leader.node_id)
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
    "short": [(6, "kill-leader", 1.5), (6, "pause-leader", 2.5), (6, "kill-follower", 1.5), (6, "kill-all", 1.0)],
    "full": [(8, "kill-leader", 2), (8, "kill-follower", 2), (8, "pause-leader", 3), (8, "kill-majority", 3),
             (8, "pause-follower", 3), (8, "rolling-restart", 0), (8, "kill-all", 2), (8, "kill-leader", 2)],
}
