"""Raft timing and storage settings, and their mapping onto PySyncObj's SyncObjConf.

The choices (see README "Tuning"):
* `appendEntriesUseBatch=False`: PySyncObj wakes its tick thread through a pipe when a
  command is queued and ships it at once (about 1 ms on loopback instead of 100-200 ms).
  Throughput comes from our own batching instead: `node.proposer` packs every write that
  arrives in one event-loop turn into a single log entry.
* heartbeat 50 ms, election timeout 0.4-1.0 s: a new leader about 0.6 s after a leader dies
  (the first of two followers' random timeouts), the wide range keeping split votes rare,
  yet tolerant of GIL and GC pauses of a few hundred milliseconds on a busy 2-core machine
  (measured: `raftkv chaos --schedule failover`, BENCHMARKS.md; no leader change in the
  benchmarks at 128 clients).
* `leaderFallbackTimeout` = the minimum election timeout: a leader cut off from the majority
  steps down no later than the majority can elect a new one (PySyncObj's default is 30 s).
* journal and dump always together (a journal without a dump loses state, reference §4.3);
  the dump is written by our checkpoint hooks (node.checkpoint), in our format.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pysyncobj import SyncObjConf

from snapshots.store import DUMP_FILE, SNAPSHOT_DIR  # noqa: F401 - the checkpoint layout, re-exported

JOURNAL_FILE = "raft.journal"



@dataclass(frozen=True)
class RaftSettings:
    heartbeat_s: float = 0.05
    election_min_s: float = 0.4
    election_max_s: float = 1.0
    connection_timeout_s: float = 2.0
    reconnect_s: float = 0.3
    # Snapshot when the log has this many entries since the last one, or this long has passed
    # with changes. etcd 3.4 keeps 100,000 entries (10,000 in older releases), Consul snapshots
    # every 30 s past 16,384 entries. A raftkv entry is a batch of up to 512 writes, so 10,000
    # entries bound a restart's replay to seconds, while a snapshot (written by a thread from
    # tables frozen in O(1)) costs one pass over the store per 10,000 entries.
    snapshot_min_entries: int = 10_000
    snapshot_min_time_s: float = 120.0
    snapshot_retain: int = 3

    def to_conf(self, data_dir: str, bind_addr: str, checkpointer=None, on_state_changed=None) -> SyncObjConf:
        return SyncObjConf(
            onStateChanged=on_state_changed,
            bindAddress=bind_addr,
            journalFile=os.path.join(data_dir, JOURNAL_FILE),
            fullDumpFile=os.path.join(data_dir, DUMP_FILE),
            appendEntriesUseBatch=False,
            appendEntriesPeriod=self.heartbeat_s,
            autoTickPeriod=self.heartbeat_s,
            raftMinTimeout=self.election_min_s,
            raftMaxTimeout=self.election_max_s,
            leaderFallbackTimeout=self.election_min_s,
            connectionTimeout=self.connection_timeout_s,
            connectionRetryTime=self.reconnect_s,
            commandsWaitLeader=False,
            dynamicMembershipChange=True,
            logCompactionMinEntries=self.snapshot_min_entries,
            logCompactionMinTime=self.snapshot_min_time_s,
            maxBindRetries=1,
            bindRetryTime=0.1,
            serializer=checkpointer.serialize if checkpointer else None,
            deserializer=checkpointer.deserialize if checkpointer else None,
            serializeChecker=checkpointer.check if checkpointer else None,
        )
