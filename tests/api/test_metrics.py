"""GET /metrics and Consul's /v1/agent/metrics over a fake node (api/metrics.py,
api/metrics_routes.py, api/request_metrics.py): typed series, requests counted by route
template on both fronts, the node's figures, and ACLs."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from api.context import ApiConfig
from node.metrics import RaftEvents
from tests.api.fake_node import FakeNode
from tests.api.test_acl import fronts
from tests.api.test_lean_front import CONFIG, served


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict, family: str, sample: str | None = None, **labels) -> float:
    matches = [s.value for s in fams[family].samples
               if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, (family, sample, labels, fams[family].samples)
    return matches[0]


async def scrape(session: aiohttp.ClientSession, port: int, path: str = "/metrics", **headers) -> dict:
    async with session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        return families(await resp.text())


async def test_metrics_are_typed_and_count_requests_by_route_template_on_both_fronts():
    node = FakeNode()
    async with served(node, True, CONFIG) as lean, served(node, False, CONFIG) as aio, \
            aiohttp.ClientSession() as session:
        for port in (lean, aio):
            base = f"http://127.0.0.1:{port}"
            for key in ("a", "b/c"):
                async with session.put(f"{base}/v1/kv/{key}", data=b"v") as r:
                    assert r.status == 200
            async with session.get(f"{base}/v1/kv/a?stale") as r:
                assert r.status == 200
            async with session.get(f"{base}/v1/kv/missing") as r:
                assert r.status == 404
            async with session.get(f"{base}/v1/kv/a?consistent&index=1&wait=10ms") as r:  # a blocking query
                assert r.status == 200
            async with session.get(f"{base}/no/such/route/secret-ish") as r:
                assert r.status == 404
        fams = await scrape(session, lean)
        assert fams["raftkv_http_requests"].type == "counter"
        assert fams["raftkv_http_request_duration_seconds"].type == "histogram"
        assert fams["raftkv_raft_is_leader"].type == "gauge"
        assert fams["etcd_disk_wal_fsync_duration_seconds"].type == "histogram"
        assert "process_cpu_seconds_total" in {s.name for f in fams.values() for s in f.samples}
        total = "raftkv_http_requests"
        # One app per served() here: each front's requests are counted where they were answered.
        assert value(fams, total, total + "_total", route="/v1/kv/{key}", method="PUT", status="200",
                     consistency="none") == 2
        assert value(fams, total, total + "_total", route="/v1/kv/{key}", method="GET", status="200",
                     consistency="stale") == 1
        assert value(fams, total, total + "_total", route="/v1/kv/{key}", method="GET", status="404",
                     consistency="default") == 1
        aio_fams = await scrape(session, aio)
        assert value(aio_fams, total, total + "_total", route="/v1/kv/{key}", method="PUT", status="200",
                     consistency="none") == 2
        assert value(aio_fams, total, total + "_total", route="unmatched", method="GET", status="404",
                     consistency="none") == 1
        for fam in (fams, aio_fams):
            routes = {s.labels.get("route") for s in fam[total].samples}
            assert not any(r and ("b/c" in r or "secret" in r) for r in routes), routes  # templates, never keys
            # the blocking query is counted, and kept out of the latency histogram
            assert value(fam, total, total + "_total", route="/v1/kv/{key}", method="GET", status="200",
                         consistency="consistent") == 1
            latency = "raftkv_http_request_duration_seconds"
            assert not [s for s in fam[latency].samples if s.labels.get("consistency") == "consistent"]
            assert value(fam, latency, latency + "_count", route="/v1/kv/{key}", method="PUT", status="200",
                         consistency="none") == 2


async def test_metrics_report_the_nodes_figures_and_follow_its_role(serve):
    node = FakeNode()
    node.raft_events = RaftEvents(leader_changes=3, elections=2, became_leader=1)
    node.match_indexes = {"127.0.0.1:7002": 2, "127.0.0.1:7003": 0}
    for i in range(3):
        node.put(f"k{i}", b"v")
    client = await serve(node)
    fams = families(await (await client.get("/metrics")).text())
    assert value(fams, "raftkv_raft_is_leader") == value(fams, "etcd_server_is_leader") == 1
    assert value(fams, "consul_server_isLeader") == 1
    assert value(fams, "raftkv_raft_commit_index") == value(fams, "etcd_server_proposals_committed_total") == 3
    assert value(fams, "raftkv_raft_leader_changes", "raftkv_raft_leader_changes_total") == 3
    assert value(fams, "etcd_server_leader_changes_seen", "etcd_server_leader_changes_seen_total") == 3
    assert value(fams, "consul_raft_state_candidate") == 2 and value(fams, "consul_raft_state_leader") == 1
    assert value(fams, "raftkv_raft_follower_lag_entries", follower="127.0.0.1:7002") == 1
    assert value(fams, "raftkv_raft_follower_lag_entries", follower="127.0.0.1:7003") == 3
    assert value(fams, "raftkv_node_info", node_id="n1") == 1
    assert value(fams, "raftkv_autopilot_healthy") == value(fams, "consul_autopilot_healthy") == 1  # one voter, leading
    assert value(fams, "consul_autopilot_failure_tolerance") == 0
    node.follow(None, None, contact_ms=None)
    fams = families(await (await client.get("/metrics")).text())
    assert value(fams, "raftkv_raft_is_leader") == value(fams, "raftkv_raft_has_leader") == 0
    assert value(fams, "etcd_server_has_leader") == 0
    assert "raftkv_raft_last_contact_seconds" not in fams  # never heard from a leader: no figure
    assert value(fams, "raftkv_autopilot_healthy") == 0


async def test_agent_metrics_serve_the_same_text_or_consuls_json_shape(serve):
    node = FakeNode()
    node.put("k", b"v")
    client = await serve(node)
    text = await (await client.get("/v1/agent/metrics", params={"format": "prometheus"})).text()
    assert set(families(text)) == set(families(await (await client.get("/metrics")).text()))
    r = await client.get("/v1/agent/metrics")
    assert r.status == 200 and r.content_type == "application/json"
    doc = await r.json()
    assert set(doc) == {"Timestamp", "Gauges", "Points", "Counters", "Samples"} and doc["Timestamp"].endswith(" UTC")
    gauges = {g["Name"]: g for g in doc["Gauges"]}
    assert gauges["raftkv_raft_applied_index"] == {"Name": "raftkv_raft_applied_index", "Value": 1.0, "Labels": {}}
    counters = {(c["Name"], tuple(sorted(c["Labels"].items()))): c["Value"] for c in doc["Counters"]}
    assert counters[("raftkv_http_requests_total", (("consistency", "none"), ("method", "GET"), ("route", "/metrics"),
                                                    ("status", "200")))] == 1
    samples = {s["Name"]: s for s in doc["Samples"] if not s["Labels"]}
    assert samples["raftkv_journal_fsync_duration_seconds"]["Count"] == 0


async def test_metrics_need_operator_read_once_acls_are_on():
    async with fronts() as (_node, _lean, aio, t):
        for path in ("/metrics", "/v1/agent/metrics"):
            status, _, body = await aio.call("GET", path)
            assert status == 403 and b"lacks permission 'operator:read'" in body, body
            assert (await aio.call("GET", path, t["read"]))[0] == 403
        async with aiohttp.ClientSession() as session:  # Prometheus' bearer token
            fams = await scrape(session, int(aio.base.rsplit(":", 1)[1]), Authorization=f"Bearer {t['mgmt']}")
        assert "raftkv_raft_term" in fams


async def test_metrics_are_open_while_acls_are_off(serve):
    client = await serve(FakeNode(), ApiConfig(request_timeout_s=1.0))
    assert (await client.get("/metrics")).status == 200
