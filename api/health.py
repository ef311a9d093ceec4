"""Health, in the shapes orchestrators and Consul's tools read.

* `GET /livez`: the process answers (Kubernetes' liveness probe).
* `GET /readyz`: this node can serve reads that reflect the cluster: a leader is known and it
  has applied everything it knows to be committed, and it is not replaying its own log. As
  rqlite has it: `?noleader` skips the leader check; `?sync` first waits (up to `?timeout=`,
  a Go duration, default 5s) until this node has applied the commit index known when the
  request came. 200 with one `[+]check ok` line per check, else 503 with `[-]check: why`.
* `GET /v1/operator/autopilot/health`: Consul's per-server health as this node sees it (every
  node hears every peer's hello twice a second: node.membership.PeerHello). A server is healthy
  when it is this node or was heard within LAST_CONTACT_THRESHOLD_S, is in the leader's term,
  and trails this node's commit index by at most MAX_TRAILING_LOGS. 200 when the cluster is
  healthy (a leader, every voter healthy), 429 otherwise, as Consul answers.
  Beside Consul's fields each server has `Alarms` (etcd's word): `["NOSPACE"]` while its disk
  takes no durable write (node.disk; a peer's from its hello), which makes it unhealthy.
  `/readyz` fails its `disk` check on such a node (writes there are refused with 507).
"""

from __future__ import annotations

import time

from aiohttp import web

from api.context import CTX
from api.errors import HTTPProblem
from api.node_port import Node
from api.params import parse_duration

LAST_CONTACT_THRESHOLD_S = 1.5  # three hellos (Consul's default threshold is 200ms of its own heartbeats)
MAX_TRAILING_LOGS = 250  # Consul's autopilot default
DEFAULT_SYNC_TIMEOUT_S = 5.0


async def livez(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    node = request.app[CTX].node
    if "sync" in request.query:
        await _sync(request)
    status = node.status()
    checks: list[tuple[str, str | None]] = [("node", None)]
    if "noleader" not in request.query:
        checks.append(("leader", None if node.leader else "no leader known"))
    applied, commit = status.get("applied_index", 0), status.get("commit_index", 0)
    store: str | None = None
    if status.get("recovering"):
        store = "replaying its own log"
    elif applied < commit:
        store = f"applied {applied} of {commit} committed"
    checks.append(("store", store))
    disk = status.get("disk") or {}
    checks.append(("disk", (disk.get("reason") or "disk full") if disk.get("full") else None))
    ready = all(why is None for _, why in checks)
    text = "".join(f"[+]{name} ok\n" if why is None else f"[-]{name}: {why}\n" for name, why in checks)
    return web.Response(status=200 if ready else 503, text=text)


async def _sync(request: web.Request) -> None:
    """Wait until this node has applied the commit index it knew when the request came."""
    try:
        timeout_s = parse_duration(request.query.get("timeout") or f"{DEFAULT_SYNC_TIMEOUT_S}s")
    except ValueError as exc:
        raise HTTPProblem(400, f"invalid timeout: {exc}") from None
    node = request.app[CTX].node
    target = node.status().get("commit_index", 0)
    deadline = time.monotonic() + max(0.0, timeout_s)
    while node.status().get("applied_index", 0) < target and time.monotonic() < deadline:
        # Any applied write wakes this; the bound catches entries that change no key.
        await node.wait_for_change("", True, min(0.1, deadline - time.monotonic()))


async def autopilot_health(request: web.Request) -> web.Response:
    body = autopilot_report(request.app[CTX].node)
    return web.json_response(body, status=200 if body["Healthy"] else 429)


def autopilot_report(node: Node) -> dict:
    """Consul's autopilot health body as this node sees it (also read by api/metrics.py)."""
    status = node.status()
    me, leader, term = node.raft_address, node.leader, status.get("term", 0)
    config = node.configuration()
    hellos = node.hellos()
    now = time.monotonic()
    own_disk_full = bool((status.get("disk") or {}).get("full"))
    servers = []
    for addr in [*config["voters"], *config["learners"]]:
        voter = addr in config["voters"]
        node_id = config["members"].get(addr, (addr, ""))[0]
        contact_s: float | None
        if addr == me:
            last_index, last_term, contact_s, heard = status.get("applied_index", 0), term, 0.0, True
            alarms = ["NOSPACE"] if own_disk_full else []
        else:
            hello = hellos.get(addr)
            heard = hello is not None
            last_index = hello.applied if hello else 0
            last_term = hello.term if hello else 0
            contact_s = now - hello.at if hello else None
            alarms = ["NOSPACE"] if hello is not None and hello.disk_full else []
        healthy = (not alarms and heard and contact_s is not None and contact_s <= LAST_CONTACT_THRESHOLD_S
                   and last_term == term and status.get("commit_index", 0) - last_index <= MAX_TRAILING_LOGS)
        servers.append({"ID": node_id, "Name": node_id, "Address": addr, "SerfStatus": "alive" if heard else "failed",
                        "Version": "", "Leader": addr == leader,
                        "LastContact": "0s" if contact_s is None else f"{contact_s * 1000:.0f}ms",
                        "LastTerm": last_term, "LastIndex": last_index, "Healthy": healthy, "Voter": voter,
                        "StableSince": "", "Alarms": alarms})
    voters = [s for s in servers if s["Voter"]]
    healthy_voters = sum(s["Healthy"] for s in voters)
    quorum = len(voters) // 2 + 1
    healthy = leader is not None and healthy_voters == len(voters)
    return {"Healthy": healthy, "FailureTolerance": max(0, healthy_voters - quorum), "Servers": servers}
