"""Start-up planning: what the data folder says before Raft runs.

`plan_startup` checks that the folder is writable and belongs to this node (`node-identity`:
Raft identity is the address), that the Raft port is free, and decides this node's voters and
standing from the saved membership, `--join` or `--peers` (node.membership). `recover_log`
opens the journal, makes `raft.dump` the newest valid snapshot (node.checkpoint), and decides
whether this node must not vote until it holds again what it may have acknowledged
(a quarantine: a damaged journal, a lost vote file, or a journal set aside because no
snapshot can rebuild the state).

Main thread, before the engine starts; every refusal is a StartupError with one line.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from node.addresses import NodeAddresses
from node.checkpoint import Checkpointer
from node.disk import DiskMonitor
from node.engine import DurableJournal, JournalError
from node.errors import StartupError
from node.membership import MembershipFile, Quarantine, Standing, is_fresh
from node.settings import DUMP_FILE, JOURNAL_FILE, SNAPSHOT_DIR
from snapshots.fsutil import write_atomic

log = logging.getLogger(__name__)

IDENTITY_FILE = "node-identity"


@dataclass
class StartupPlan:
    other_voters: list[str]  # the voters to start with, this node excluded
    standing: Standing  # what this node may do in Raft at first
    membership_file: MembershipFile
    config_floor: int  # index of the saved configuration: entries up to it are history it reflects


def plan_startup(addresses: NodeAddresses, data_dir: str, join_voters: list[str] | None,
                 force_new_cluster: bool) -> StartupPlan:
    """`join_voters`: this node joins an existing cluster whose voters these are (it starts as
    a learner); None: it is (or forms) a cluster from `addresses.peers`. `force_new_cluster`:
    it restarts alone, as the only voter of its cluster."""
    fresh = is_fresh(data_dir, JOURNAL_FILE, SNAPSHOT_DIR)
    prepare_data_dir(data_dir, addresses)
    membership_file = MembershipFile(data_dir)
    if force_new_cluster:
        if fresh:
            raise StartupError("--force-new-cluster needs this node's own data; the folder is empty")
        before = membership_file.load() or {"cluster_id": None}
        membership_file.store(before["cluster_id"], [addresses.raft], {}, 0)
        log.warning("forcing a new cluster: %s is its only voter; the other members are dropped", addresses.raft)
    saved = membership_file.load()
    standing = Standing()
    other_voters = _plan_membership(addresses, data_dir, saved, fresh, join_voters, standing)
    check_port_free(addresses.bind, "raft")
    return StartupPlan(other_voters, standing, membership_file, saved["index"] if saved else 0)


def _plan_membership(addresses: NodeAddresses, data_dir: str, saved: dict | None, fresh: bool,
                     join_voters: list[str] | None, standing: Standing) -> list[str]:
    """The other voters to start with; sets this node's standing among them."""
    a = addresses
    if saved is not None and saved["voters"]:
        if a.raft in saved["learners"]:
            standing.learner, standing.voting = True, False
            standing.why = "learner: catching up before it becomes a voter"
        elif a.raft not in saved["voters"]:
            raise StartupError(
                f"this node ({a.raft}) was removed from cluster {saved['cluster_id']}; to add it again, start it "
                f"with an empty data folder and --join <a member's HTTP address>")
        if join_voters is not None:
            log.info("--join ignored: this node's data folder already holds its membership")
        return [v for v in saved["voters"] if v != a.raft]
    if join_voters is not None:
        if not fresh:
            raise StartupError(f"--join needs an empty data folder; {data_dir} holds another node's data")
        standing.learner, standing.voting = True, False
        standing.why = "learner: catching up before it becomes a voter"
        return [v for v in join_voters if v != a.raft]
    if fresh:
        # Probation: no vote and no entry until the peers say this cluster is new (node.admission).
        standing.voting = standing.accepting = False
        standing.why = "new node: asking the peers whether the cluster exists"
    return a.other_peers()


@dataclass
class RecoveredLog:
    journal: DurableJournal
    quarantine: Quarantine | None  # None: this node holds everything it may have acknowledged
    recovering: bool  # the state comes from the peers (no local snapshot could rebuild it)


def recover_log(data_dir: str, checkpointer: Checkpointer, standing: Standing,
                on_sync: Callable[[int, float], None] | None = None, disk: DiskMonitor | None = None) -> RecoveredLog:
    """Open the journal and pick the snapshot to start from; a quarantine takes away the vote."""
    journal_path, dump_path = os.path.join(data_dir, JOURNAL_FILE), os.path.join(data_dir, DUMP_FILE)
    quarantine = None
    recovering = False
    try:
        meta_existed = os.path.exists(journal_path + ".meta")
        journal = DurableJournal(journal_path, dump_path, on_sync=on_sync, disk=disk)
        term_before = journal.current_term
        first = journal.first_index if journal.first_index is not None else 1
        rebuildable, snapshot = checkpointer.prepare_startup(first)
        if snapshot is not None and journal.current_term < snapshot.term:
            # A snapshot restored offline carries its term; ours must never be below it.
            journal.start_term(snapshot.term)
        if journal.damage is not None:
            d = journal.damage
            quarantine = Quarantine(f"journal damaged ({d.reason})", max(term_before, d.high_term),
                                    d.high_index, d.high_term)
        elif journal.last_entry is not None and not meta_existed:
            last = journal.last_entry
            # The log is whole, the vote is not: only a newer term than the log shows cures it.
            quarantine = Quarantine("the journal's term and vote file is missing", last[2])
        if not rebuildable:
            # No snapshot to rebuild the state from, and a journal that starts after index 1.
            last = journal.last_entry or (b"", 0, 0)
            journal.close()
            broken = f"{journal_path}.{int(time.time())}.broken"
            os.replace(journal_path, broken)
            log.error("no usable snapshot and the journal starts at index %d: moved it aside to %s; "
                      "recovering the state from the peers", first, os.path.basename(broken))
            journal = DurableJournal(journal_path, dump_path, on_sync=on_sync, disk=disk)
            recovering = True
            quarantine = Quarantine("no usable snapshot (journal set aside)", max(term_before, last[2]),
                                    last[1], last[2])
    except (JournalError, OSError) as exc:
        raise StartupError(str(exc)) from None
    if quarantine is not None:
        standing.voting = False
        standing.why = f"quarantined: {quarantine.reason}"
        log.warning("not voting until this node holds again what it may have acknowledged: %s", quarantine.reason)
    return RecoveredLog(journal, quarantine, recovering)


def prepare_data_dir(data_dir: str, addresses: NodeAddresses) -> None:
    """Create the data folder and check that it belongs to this node."""
    try:
        os.makedirs(data_dir, exist_ok=True)
        probe = os.path.join(data_dir, ".write-test")
        with open(probe, "wb") as f:
            f.write(b"ok")
        os.unlink(probe)
    except OSError as exc:
        raise StartupError(f"data folder {data_dir} is not writable: {exc.strerror}") from None
    identity_path = os.path.join(data_dir, IDENTITY_FILE)
    identity = f"{addresses.node_id} {addresses.raft}\n"
    if os.path.exists(identity_path):
        with open(identity_path) as f:
            existing = f.read()
        if existing != identity:
            old = existing.split()
            raise StartupError(
                f"data folder {data_dir} belongs to node {old[0]} at {old[1]}, not "
                f"{addresses.node_id} at {addresses.raft} (Raft identity is the address)"
            )
    else:
        write_atomic(identity_path, identity.encode())


def check_port_free(addr: str, what: str, source: str | None = None) -> None:
    """StartupError unless this process could listen on `addr` now; `source`: where the user set it."""
    named = f"{what} address {addr}" + (f" ({source})" if source else "")
    host, _, port = addr.rpartition(":")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (socket.gaierror, ValueError) as exc:
        raise StartupError(f"cannot resolve {named}: {exc}") from None
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(sockaddr)
        except OSError as exc:
            raise StartupError(f"cannot listen on {named}: {exc.strerror}") from None
