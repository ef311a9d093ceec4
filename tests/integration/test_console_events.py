"""The console's event stream on a real cluster (api/ui/events.py): a follower's stream
pushes the new leader, and the timeline's leader event, soon after the leader is killed."""

from __future__ import annotations

import json
import time
import urllib.request


def read_events(resp, until, timeout_s: float):
    """Yield (event, data) from an open SSE response until `until(event, data)` or the deadline."""
    deadline = time.monotonic() + timeout_s
    name = None
    while time.monotonic() < deadline:
        line = resp.readline().decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name:
            data = json.loads(line[6:])
            if until(name, data):
                return name, data
    raise AssertionError("no such event before the deadline")


def test_a_followers_stream_shows_the_new_leader_after_the_leader_is_killed(cluster):
    leader = cluster.leader()
    follower = cluster.followers()[0]
    with urllib.request.urlopen(f"{follower.url}/v1/raftkv/ui/events", timeout=20) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        _, first = read_events(resp, lambda e, d: e == "cluster", 10)
        assert [n["id"] for n in first["nodes"] if n["state"] == "leader"] == [leader.node_id]
        assert {n["id"] for n in first["nodes"]} == {n.node_id for n in cluster.nodes}
        leader.kill()
        killed = time.monotonic()
        _, after = read_events(resp, lambda e, d: e == "cluster" and d["leader"] not in (None, leader.raft), 15)
        print(f"new leader pushed {time.monotonic() - killed:.2f} s after SIGKILL")
        gone = next(n for n in after["nodes"] if n["id"] == leader.node_id)
        assert gone["state"] == "down"
        new = [n for n in after["nodes"] if n["state"] == "leader"]
        assert len(new) == 1 and new[0]["raft"] == after["leader"]
        new_leader = after["leader"]
        read_events(resp, lambda e, d: e == "timeline" and any(x["kind"] == "leader" and x.get("leader") == new_leader
                                                               for x in d), 10)
