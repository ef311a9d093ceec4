"""The metrics a node exports: what its scrape registry holds, and the collector that reads the
node at scrape time.

A scrape (api/metrics_routes.py) renders one registry per app: prometheus_client's default
`REGISTRY` (process metrics, and any metric another module registers there) plus a
`NodeCollector`. The collector turns the node's own counts (node.metrics.NodeMetrics, plain
numbers counted where the events happen) and this app's HTTP counts (api.request_metrics)
into metric families when Prometheus asks, so no hot path touches prometheus_client.

Names follow Prometheus' conventions under `raftkv_`; beside them, the etcd and Consul series
whose meaning is the same (README "Metrics" lists them all).
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from api.forward import LeaderForwarder
from api.health import autopilot_report
from api.node_port import Node
from api.request_metrics import RequestMetrics
from node.metrics import Histogram, NodeMetrics

HTTP_LABELS = ["route", "method", "status", "consistency"]


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _histogram(name: str, doc: str, histogram: Histogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[])
    family.add_metric([], histogram.cumulative(), histogram.sum)
    return family


def _consul_counter(name: str, doc: str, value: float) -> Metric:
    """Consul's counters carry no `_total` (go-metrics' Prometheus sink names them as Consul
    does); prometheus_client would add one to a counter, so they are exposed untyped."""
    family = Metric(name, doc, "unknown")
    family.add_sample(name, {}, value)
    return family


class NodeCollector:
    """Reads the node, the forwarder and the HTTP counts when a scrape asks (event loop)."""

    def __init__(self, node: Node, requests: RequestMetrics, forwarder: LeaderForwarder) -> None:
        self.node, self.requests, self.forwarder = node, requests, forwarder

    def collect(self) -> Iterator[Metric]:
        m = self.node.metrics()
        yield from _raft(m)
        yield from _work(m)
        yield from _snapshots(m)
        yield from self._http()
        yield from self._autopilot()
        yield from _etcd(m)
        yield from _consul(m)

    def _autopilot(self) -> Iterator[Metric]:
        """GET /v1/operator/autopilot/health's verdict, as this node sees it, under raftkv's
        names and Consul's (Consul reports it from its leader; any raftkv node answers it)."""
        report = autopilot_report(self.node)
        healthy, tolerance = int(report["Healthy"]), report["FailureTolerance"]
        yield _gauge("raftkv_autopilot_healthy", "1 if every voter is healthy and a leader is known "
                     "(GET /v1/operator/autopilot/health)", healthy)
        yield _gauge("raftkv_autopilot_failure_tolerance", "Voters the cluster can lose and keep a quorum",
                     tolerance)
        yield _gauge("consul_autopilot_healthy", "1 if the cluster is healthy (Consul's name)", healthy)
        yield _gauge("consul_autopilot_failure_tolerance", "Voters the cluster can lose (Consul's name)", tolerance)

    def _http(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("raftkv_http_requests_total", "HTTP requests answered, by route template, "
                                       "method, status and consistency mode", labels=HTTP_LABELS)
        for labels, n in list(self.requests.count.items()):
            requests.add_metric(labels, n)
        yield requests
        latency = HistogramMetricFamily("raftkv_http_request_duration_seconds", "Time to answer an HTTP request "
                                        "(blocking queries left out)", labels=HTTP_LABELS)
        for labels, histogram in list(self.requests.latency.items()):
            latency.add_metric(labels, histogram.cumulative(), histogram.sum)
        yield latency
        forwarded = CounterMetricFamily("raftkv_forwarded_requests_total", "Requests this node forwarded to the "
                                        "leader over HTTP, by result", labels=["result"])
        forwarded.add_metric(["ok"], self.forwarder.forwarded)
        forwarded.add_metric(["error"], self.forwarder.forward_failures)
        yield forwarded


def _raft(m: NodeMetrics) -> Iterator[Metric]:
    info = GaugeMetricFamily("raftkv_node_info", "Always 1: this node's name", labels=["node_id"])
    info.add_metric([m.node_id], 1)
    yield info
    yield _gauge("raftkv_raft_is_leader", "1 if this node is the leader", int(m.is_leader))
    yield _gauge("raftkv_raft_has_leader", "1 if this node knows a leader", int(m.has_leader))
    yield _gauge("raftkv_raft_term", "The current Raft term", m.term)
    yield _gauge("raftkv_raft_commit_index", "The highest log index known committed", m.commit_index)
    yield _gauge("raftkv_raft_applied_index", "The highest log index applied to this node's store", m.applied_index)
    yield _gauge("raftkv_raft_last_index", "The newest entry in this node's log", m.last_index)
    if m.last_contact_s is not None:
        yield _gauge("raftkv_raft_last_contact_seconds", "Since this node last heard from the leader (0 on the "
                     "leader)", m.last_contact_s)
    match = GaugeMetricFamily("raftkv_raft_follower_match_index", "Leader only: the highest index known "
                              "replicated on each follower", labels=["follower"])
    lag = GaugeMetricFamily("raftkv_raft_follower_lag_entries", "Leader only: entries of the leader's log a "
                            "follower does not hold yet", labels=["follower"])
    for follower, index in sorted(m.follower_match_index.items()):
        match.add_metric([follower], index)
        lag.add_metric([follower], max(0, m.last_index - index))
    yield match
    yield lag
    yield _counter("raftkv_raft_leader_changes_total", "Times this node saw a new leader", m.events.leader_changes)
    yield _counter("raftkv_raft_elections_total", "Elections this node started (became a candidate)",
                   m.events.elections)
    yield _counter("raftkv_raft_became_leader_total", "Times this node became the leader", m.events.became_leader)
    yield _counter("raftkv_raft_entries_appended_total", "Log entries written to this node's journal",
                   m.entries_appended)
    yield _counter("raftkv_journal_written_bytes_total", "Bytes written to this node's journal",
                   m.journal_bytes_written)
    yield _histogram("raftkv_journal_fsync_duration_seconds", "Time of each journal fdatasync", m.fsync_seconds)


def _work(m: NodeMetrics) -> Iterator[Metric]:
    yield _counter("raftkv_proposals_entries_total", "Log entries this node proposed",
                   m.entries_proposed)
    yield _counter("raftkv_proposals_writes_total", "Writes this node proposed", m.writes_proposed)
    yield _gauge("raftkv_proposals_pending", "Entries proposed here and not yet answered, plus writes waiting "
                 "for a slot", m.proposals_pending)
    yield _histogram("raftkv_proposals_writes_per_entry", "Writes batched into each log entry that carries writes",
                     m.writes_per_entry)
    yield _counter("raftkv_raft_merged_entries_total", "Leader: log entries that carried the batches of two "
                   "proposals or more", m.merged_entries)
    yield _counter("raftkv_raft_merged_batches_total", "Leader: the proposals' batches those entries carried",
                   m.merged_batches)
    # The series keep their read-barrier names (dashboards); a round is now a ReadIndex round.
    yield _counter("raftkv_read_barrier_rounds_total", "Linearizable read rounds (ReadIndex confirmations "
                   "this node waited for)", m.barrier_rounds)
    yield _counter("raftkv_read_barrier_reads_total", "Linearizable reads that waited for a round", m.barrier_reads)
    yield _histogram("raftkv_read_barrier_reads_per_round", "Reads served by each linearizable read round",
                     m.reads_per_barrier)
    yield _gauge("raftkv_blocking_queries", "Blocking queries waiting on this node", m.blocking_queries)


def _snapshots(m: NodeMetrics) -> Iterator[Metric]:
    yield _counter("raftkv_snapshots_total", "Snapshots this node wrote", m.snapshots_taken)
    yield _counter("raftkv_snapshot_failures_total", "Snapshots that failed", m.snapshot_failures)
    yield _histogram("raftkv_snapshot_duration_seconds", "Time to write each snapshot, capture to file",
                     m.snapshot_seconds)
    yield _histogram("raftkv_snapshot_capture_pause_seconds", "Time applies waited for each snapshot's capture",
                     m.snapshot_capture_pause_seconds)
    if m.snapshot_last_size_bytes is not None:
        yield _gauge("raftkv_snapshot_size_bytes", "Size of the newest snapshot this node wrote",
                     m.snapshot_last_size_bytes)


def _etcd(m: NodeMetrics) -> Iterator[Metric]:
    """etcd's names, where raftkv's figure means the same (etcd's own types and units)."""
    yield _gauge("etcd_server_has_leader", "1 if a leader exists (etcd's name)", int(m.has_leader))
    yield _gauge("etcd_server_is_leader", "1 if this member is the leader (etcd's name)", int(m.is_leader))
    yield _counter("etcd_server_leader_changes_seen_total", "Leader changes seen (etcd's name)",
                   m.events.leader_changes)
    # etcd's two "_total" proposal series are gauges: the commit and applied indexes.
    yield _gauge("etcd_server_proposals_committed_total", "The commit index (etcd's name)", m.commit_index)
    yield _gauge("etcd_server_proposals_applied_total", "The applied index (etcd's name)", m.applied_index)
    yield _gauge("etcd_server_proposals_pending", "Proposals not yet answered (etcd's name)", m.proposals_pending)
    yield _histogram("etcd_disk_wal_fsync_duration_seconds", "Journal fdatasync latency (etcd's name)",
                     m.fsync_seconds)
    yield _counter("etcd_disk_wal_write_bytes_total", "Bytes written to the journal (etcd's name)",
                   m.journal_bytes_written)


def _consul(m: NodeMetrics) -> Iterator[Metric]:
    """Consul's names (as its Prometheus sink spells them), where the meaning is the same."""
    yield _gauge("consul_server_isLeader", "1 if this server is the leader (Consul's name)", int(m.is_leader))
    yield _consul_counter("consul_raft_state_leader", "Times this server became the leader (Consul's name)",
                          m.events.became_leader)
    yield _consul_counter("consul_raft_state_candidate", "Elections this server started (Consul's name)",
                          m.events.elections)
    yield _gauge("consul_raft_applied_index", "The applied index (Consul's name)", m.applied_index)
    yield _gauge("consul_raft_last_index", "The newest log index (Consul's name)", m.last_index)


class _DefaultRegistry:
    """prometheus_client's default REGISTRY inside an app's registry: process metrics and
    whatever other modules register there (an app may run several times in one test process,
    so the node collector itself is never registered globally)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def scrape_registry(node: Node, requests: RequestMetrics, forwarder: LeaderForwarder) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_DefaultRegistry())
    registry.register(NodeCollector(node, requests, forwarder))
    return registry


METRICS_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)
