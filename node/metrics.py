"""What a node counts for its metrics, in plain Python numbers (api/metrics.py exports them).

Hot paths (a journal sync, a proposal, a read barrier round) only add to ints and one list
slot here: no locks, no label lookups, nothing from prometheus_client. The exporter reads
these at scrape time. A reader on another thread may see a histogram's sum a moment ahead of
its buckets; a scrape tolerates that, and the GIL keeps each `+=` whole enough for counting.

`NodeMetrics` is one scrape's view of a node, built by `RaftNode.metrics()` on the event loop.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

# Bucket upper bounds (seconds). etcd's WAL fsync histogram uses 0.001 * 2^k up to 4 s; this is
# the same ladder, so dashboards built for etcd read ours alike.
FSYNC_BUCKETS_S = tuple(0.001 * 2**k for k in range(14))
# Log entries carry up to 512 writes (node.proposer.MAX_BATCH_OPS); reads per barrier round alike.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
SNAPSHOT_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
PAUSE_BUCKETS_S = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1)


class Histogram:
    """Counts of observations per bucket (`value <= bound`, as Prometheus' `le`), their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last slot: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """[(le, observations <= le)] ending with ("+Inf", all): Prometheus' bucket samples."""
        counts = list(self.counts)  # one copy: a concurrent observe cannot make it non-monotonic
        out, running = [], 0
        for bound, n in zip((*(repr(float(b)) for b in self.bounds), "+Inf"), counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass
class RaftEvents:
    """Events the node sees on its tick thread; counted where they happen (node.raft)."""

    leader_changes: int = 0  # a leader became known that differs from the last one seen (etcd's rule)
    elections: int = 0  # this node became a candidate
    became_leader: int = 0  # this node became the leader


@dataclass
class NodeMetrics:
    """One scrape's view of a node: state read now, plus the event counts so far."""

    node_id: str
    is_leader: bool
    has_leader: bool
    term: int
    commit_index: int
    applied_index: int
    last_index: int  # the newest entry in this node's log
    last_contact_s: float | None  # since the leader was last heard; 0 on the leader; None: never
    follower_match_index: dict[str, int]  # leader only: peer Raft address -> index known replicated there
    blocking_queries: int  # requests waiting in a blocking query on this node
    proposals_pending: int  # writes and entries proposed here and not yet answered
    events: RaftEvents
    entries_appended: int  # log entries written to this node's journal
    entries_proposed: int  # log entries proposed by this node (writes and barriers)
    writes_proposed: int
    journal_bytes_written: int
    fsync_seconds: Histogram
    writes_per_entry: Histogram
    merged_entries: int  # leader: entries that carried the batches of two proposals or more
    merged_batches: int  # the batches those entries carried
    barrier_rounds: int
    barrier_reads: int
    reads_per_barrier: Histogram
    snapshots_taken: int
    snapshot_failures: int
    snapshot_seconds: Histogram
    snapshot_capture_pause_seconds: Histogram
    snapshot_last_size_bytes: int | None
