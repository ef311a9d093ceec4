"""Raft timing and storage settings, and the names of the files in a node's data folder.

These are our words; node.engine.conf maps them onto PySyncObj's SyncObjConf and explains
each choice (see also README "Tuning").
"""

from __future__ import annotations

from dataclasses import dataclass

from snapshots.store import DUMP_FILE, SNAPSHOT_DIR  # noqa: F401 - the checkpoint layout, re-exported

JOURNAL_FILE = "raft.journal"


@dataclass(frozen=True)
class RaftSettings:
    heartbeat_s: float = 0.05
    election_min_s: float = 0.4
    election_max_s: float = 1.0
    connection_timeout_s: float = 2.0
    reconnect_s: float = 0.3
    # Peers' host names are looked up again after this long (a pod restarted with a new IP),
    # and a name that did not resolve yet (a pod not yet scheduled) after dns_retry_s.
    dns_refresh_s: float = 5.0
    dns_retry_s: float = 1.0
    # Snapshot when the log has this many entries since the last one, or this long has passed
    # with changes. etcd 3.4 keeps 100,000 entries (10,000 in older releases), Consul snapshots
    # every 30 s past 16,384 entries. A raftkv entry is a batch of up to 512 writes, so 10,000
    # entries bound a restart's replay to seconds, while a snapshot (written by a thread from
    # tables frozen in O(1)) costs one pass over the store per 10,000 entries.
    snapshot_min_entries: int = 10_000
    snapshot_min_time_s: float = 120.0
    snapshot_retain: int = 3
    # The largest log entry this node proposes or accepts; the Raft wire's frame limits follow
    # from it (node.engine.wire.WireLimits.for_entries). 64 MiB: PUT /v1/snapshot's limit
    # (api.context.ApiConfig.max_restore_bytes), one entry through the log.
    max_entry_bytes: int = 64 * 1024 * 1024
    # The cluster secrets (node.engine.peer_auth.Keyring: dial with the first, accept any). Empty:
    # the Raft wire is neither authenticated nor encrypted (loopback, or --insecure-raft).
    cluster_secrets: tuple[bytes, ...] = ()
