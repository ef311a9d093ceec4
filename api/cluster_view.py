"""The cluster at a glance from every node's own view (/v1/raftkv/status): one row per
member with its lag and health. Shared by `raftkv status` (api/status_cli.py, which asks
each node itself) and the console's event stream (api/ui/events.py, which asks from the
node that served the page), so both say the same thing.

Lag is each node's distance behind the highest commit index any node reports; health is
the node's own readiness (a leader known, everything it knows committed applied, not
replaying), or why not.
"""

from __future__ import annotations

ROW_FIELDS = ("id", "http", "raft", "state", "term", "commit_index", "applied_index", "last_contact_ms", "keys",
              "leader", "recovering")


def members_of(here: dict) -> list[dict]:
    """The members the node `here` (its status document) knows, itself when it knows none."""
    return here["members"] or [{"raft": here["raft"], "id": here["id"], "http": here["http"]}]


def combine(here: dict, statuses: list[tuple[dict, dict | None]]) -> dict:
    """`statuses`: (member, its status document or None when it did not answer)."""
    nodes: list[dict] = [{"id": m["id"], "http": m["http"], "raft": m["raft"], "state": "down"} if st is None
             else {k: st.get(k) for k in ROW_FIELDS} for m, st in statuses]
    top = max((n["commit_index"] for n in nodes if n["state"] != "down"), default=0)
    for n in nodes:
        if n["state"] != "down":
            n["lag"] = top - n["applied_index"]
            n["health"] = health(n)
    return {"leader": here["leader"], "term": here["term"], "nodes": nodes}


def health(n: dict) -> str:
    if n.get("recovering"):
        return "replaying"
    if not n.get("leader"):
        return "no leader"
    if n["applied_index"] < n["commit_index"]:
        return "applying"
    return "ok"
