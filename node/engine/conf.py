"""Our settings (node.settings.RaftSettings) as PySyncObj's SyncObjConf.

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
* `commandsWaitLeader=False`: without a leader a command fails at once (MISSING_LEADER)
  instead of waiting in PySyncObj's queue with no timeout.
* `dnsCacheTime`/`dnsFailCacheTime` of a few seconds (PySyncObj: 600 s and 30 s): a peer's
  name is looked up again soon after it moves (a StatefulSet pod restarted with a new IP) or
  first appears; the look-ups run off the tick thread (node.engine.resolver).
* journal and dump always together (a journal without a dump loses state: NOTES.md,
  "Journal without a dump"); the dump is written by our compaction hooks
  (node.engine.compaction over node.checkpoint), in our format.
"""

from __future__ import annotations

import os

from pysyncobj import SyncObjConf

from node.settings import DUMP_FILE, JOURNAL_FILE, RaftSettings


def syncobj_conf(settings: RaftSettings, data_dir: str, bind_addr: str, compaction=None,
                 on_state_changed=None) -> SyncObjConf:
    """`compaction`: an object with PySyncObj's serializer hooks (node.engine.compaction)."""
    return SyncObjConf(
        onStateChanged=on_state_changed,
        bindAddress=bind_addr,
        journalFile=os.path.join(data_dir, JOURNAL_FILE),
        fullDumpFile=os.path.join(data_dir, DUMP_FILE),
        appendEntriesUseBatch=False,
        appendEntriesPeriod=settings.heartbeat_s,
        autoTickPeriod=settings.heartbeat_s,
        raftMinTimeout=settings.election_min_s,
        raftMaxTimeout=settings.election_max_s,
        leaderFallbackTimeout=settings.election_min_s,
        connectionTimeout=settings.connection_timeout_s,
        connectionRetryTime=settings.reconnect_s,
        dnsCacheTime=settings.dns_refresh_s,
        dnsFailCacheTime=settings.dns_retry_s,
        commandsWaitLeader=False,
        dynamicMembershipChange=True,
        logCompactionMinEntries=settings.snapshot_min_entries,
        logCompactionMinTime=settings.snapshot_min_time_s,
        maxBindRetries=1,
        bindRetryTime=0.1,
        serializer=compaction.serialize if compaction else None,
        deserializer=compaction.deserialize if compaction else None,
        serializeChecker=compaction.check if compaction else None,
    )
