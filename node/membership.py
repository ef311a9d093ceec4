"""Who this node is in its cluster, and when it may vote.

Raft's safety rests on a voter never forgetting what it acknowledged. A node can forget in
two ways, and both are caught here before PySyncObj could let it vote:

* **Its data folder is empty** (a replaced disk, a wiped folder). An empty folder started
  without `--join` is *fresh*: before it votes or acknowledges anything, it learns from its
  peers (the `hello` each node sends on every Raft connection, node.engine.transport) whether their
  cluster already exists. If a peer has it as a published member (it served before), or
  names a cluster it is not in, the node refuses to start and says what to do (remove the
  member, start it again empty with `--join`). A brand-new cluster, every node empty, forms
  by itself: nobody knows anybody yet.
* **Its journal lost synced entries** (damage in the middle, or a journal set aside for
  lack of a snapshot): the node is *quarantined*. It takes entries from a leader and
  acknowledges what it truly holds, but neither votes nor campaigns until it has applied a
  committed entry of a term newer than any it knew before the damage (every entry it may
  have acknowledged is then in its log again, by Leader Completeness), or has again applied
  the highest entry the damaged journal still showed, with the same term.

Learners (joining nodes) and removed nodes do not vote either: `Standing` holds the one
answer the transport asks ("may I vote? may I take entries?").

The cluster configuration itself (cluster id, voters, learners) is replicated state
(node.state_machine); `MembershipFile` keeps the newest applied one in the data folder, so a
restart starts with it instead of the command line's peers.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field

from snapshots.fsutil import write_atomic

log = logging.getLogger(__name__)

MEMBERSHIP_FILE = "membership.json"
FORMATION_GRACE_S = 10.0  # a fresh node forms with a majority once the rest stayed silent this long


@dataclass
class Standing:
    """What this node may do in Raft right now (read by the transport on the tick thread)."""

    voting: bool = True  # grant votes and stand for election
    accepting: bool = True  # take entries and snapshots from a leader
    learner: bool = False  # connect as a non-voting reader (PySyncObj's 'readonly')
    removed: bool = False
    why: str = ""  # why not voting, for status and logs


@dataclass
class PeerHello:
    """What a peer last told us about itself (node.engine.transport sends it on every link)."""

    addr: str
    cluster: str | None
    members: list[str]  # raft addresses that published an HTTP address: nodes that served
    voters: list[str]
    learners: list[str]
    replayed: bool  # the peer has applied its own log: the lists above are complete
    applied: int
    term: int
    disk_full: bool = False  # the peer can store no entry now (node.disk)
    at: float = field(default_factory=time.monotonic)

    @classmethod
    def from_message(cls, message: dict) -> PeerHello | None:
        try:
            return cls(str(message["from"]), message.get("cluster"), list(message.get("members", [])),
                       list(message.get("voters", [])), list(message.get("learners", [])),
                       bool(message.get("replayed")), int(message.get("applied", 0)), int(message.get("term", 0)),
                       disk_full=bool(message.get("disk_full")))
        except (KeyError, TypeError, ValueError):
            return None


def is_fresh(data_dir: str, journal_file: str, snapshot_dir: str) -> bool:
    """An empty data folder: no journal entries, no term, no snapshot, no membership."""
    journal = os.path.join(data_dir, journal_file)
    # The header and PySyncObj's initial entry (index 1, term 0) are all a node writes before
    # it has heard of any term (its meta file comes with the first): a refused start leaves them.
    if os.path.exists(journal) and os.path.getsize(journal) > 16 + 24 + 8:
        return False
    if os.path.exists(journal + ".meta") or os.path.exists(os.path.join(data_dir, MEMBERSHIP_FILE)):
        return False
    snapshots = os.path.join(data_dir, snapshot_dir)
    return not (os.path.isdir(snapshots) and any(n.endswith(".rkvs") for n in os.listdir(snapshots)))


def fresh_verdict(self_addr: str, node_id: str, peers: list[str], hellos: dict[str, PeerHello],
                  waited_s: float) -> tuple[str, str]:
    """Decide for a fresh node: ("wait", who) | ("form", why) | ("refuse", one line)."""
    for hello in hellos.values():
        if not hello.replayed:
            continue
        if self_addr in hello.members:
            return "refuse", (
                f"this node's data folder is empty, but {self_addr} is a member of {_cluster_name(hello)} "
                f"that held data (peer {hello.addr} knows it): its acknowledged writes may be gone, so it must not "
                f"vote as that member. Remove it (raftkv members remove {node_id} --addr <a member>), then start it "
                f"with an empty data folder and --join <a member's HTTP address>")
        if hello.cluster is not None and self_addr not in hello.voters and self_addr not in hello.learners:
            return "refuse", (
                f"{self_addr} is not a member of cluster {hello.cluster} (peer {hello.addr}); to add this node, "
                f"start it with --join <a member's HTTP address>")
    answered = {a for a, h in hellos.items() if h.replayed}
    missing = sorted(set(peers) - answered)
    if not missing:
        return "form", "every peer answered and none knows this node"
    majority = (len(peers) + 1) // 2 + 1
    if len(answered) + 1 >= majority and waited_s >= FORMATION_GRACE_S:
        return "form", f"a majority answered and none knows this node; {', '.join(missing)} silent"
    return "wait", ", ".join(missing)


def _cluster_name(hello: PeerHello) -> str:
    return f"cluster {hello.cluster}" if hello.cluster else "this cluster"


@dataclass
class Quarantine:
    """A node whose log lost synced entries, until it holds them again (see the module doc)."""

    reason: str
    term_before: int  # the node's current term when it started: no acknowledged entry is newer
    high_index: int = 0  # the highest entry the damaged journal still showed ...
    high_term: int = 0  # ... and its term

    def cured(self, applied_index: int, applied_term: int | None, term_at_high: int | None) -> bool:
        if applied_term is not None and applied_term > self.term_before:
            return True
        return self.high_index > 0 and applied_index >= self.high_index and term_at_high == self.high_term


class MembershipFile:
    """The newest applied configuration, kept in the data folder for the next start."""

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, MEMBERSHIP_FILE)

    def load(self) -> dict | None:
        try:
            with open(self.path, "rb") as f:
                data = json.loads(f.read())
            return {"cluster_id": data.get("cluster_id"), "voters": list(data["voters"]),
                    "learners": dict(data.get("learners", {})), "index": int(data.get("index", 0))}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s unreadable (%s); using the snapshot's and the log's membership", self.path, exc)
            return None

    def store(self, cluster_id: str | None, voters: list[str], learners: dict[str, str], index: int) -> None:
        data = {"cluster_id": cluster_id, "voters": sorted(voters), "learners": learners, "index": index}
        write_atomic(self.path, json.dumps(data, sort_keys=True).encode())
