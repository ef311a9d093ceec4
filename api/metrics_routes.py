"""`GET /metrics` (Prometheus' text format) and Consul's `GET /v1/agent/metrics`
(`?format=prometheus`: the same text; without it, a JSON summary in the shape of Consul's
in-memory sink). Both need `operator:read` once ACLs are on (Consul asks `agent:read`, a rule
kind raftkv does not have); Prometheus sends its token as `Authorization: Bearer`."""

from __future__ import annotations

import math
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.acl.guards import operator_only
from api.metrics import METRICS_REGISTRY


async def _metrics_text(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _agent_metrics(request: web.Request) -> web.Response:
    if request.query.get("format") == "prometheus":
        return await _metrics_text(request)
    return web.json_response(consul_summary(request.app[METRICS_REGISTRY]))


def consul_summary(registry: CollectorRegistry) -> dict:
    """Consul's `/v1/agent/metrics` JSON over our series: gauges as `Gauges`, counters as
    `Counters` and histograms as `Samples`, each with `Name`, `Labels` and its figures. Our
    counters are totals since the node started (`Value`), not go-metrics' per-interval
    aggregates; a histogram gives its `Count`, `Sum` and `Mean`."""
    gauges: list[dict] = []
    counters: list[dict] = []
    samples: list[dict] = []
    for family in registry.collect():
        if family.type == "histogram":
            parts: dict[tuple, dict] = {}
            for s in family.samples:
                labels = {k: v for k, v in s.labels.items() if k != "le"}
                part = parts.setdefault(tuple(sorted(labels.items())), {"Labels": labels})
                if s.name.endswith("_count"):
                    part["Count"] = s.value
                elif s.name.endswith("_sum"):
                    part["Sum"] = s.value
            for part in parts.values():
                count, total = part.get("Count", 0), part.get("Sum", 0.0)
                samples.append({"Name": family.name, "Count": count, "Sum": total,
                                "Mean": total / count if count else 0.0, "Labels": part["Labels"]})
            continue
        for s in family.samples:
            if s.name.endswith("_created") or not math.isfinite(s.value):
                continue  # a creation time is no figure; JSON has no NaN or infinity
            entry = {"Name": s.name, "Value": s.value, "Labels": dict(s.labels)}
            (counters if family.type == "counter" else gauges).append(entry)
    return {"Timestamp": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime()),
            "Gauges": gauges, "Points": [], "Counters": counters, "Samples": samples}


def register(app: web.Application) -> None:
    app.router.add_get("/metrics", operator_only("read", _metrics_text))
    app.router.add_get("/v1/agent/metrics", operator_only("read", _agent_metrics))
