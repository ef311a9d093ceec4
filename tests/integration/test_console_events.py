"""The console's event stream on a real cluster (api/ui/events.py): a follower's stream
pushes the new leader, and the timeline's leader event, soon after the leader is killed."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import time
import urllib.request

from tests.support.cluster import Cluster


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
        # The timeline may name the new leader in the round before the rows do: collect both.
        leaders_named: set[str] = set()
        seen: dict = {}

        def both(event: str, data) -> bool:
            if event == "timeline":
                leaders_named.update(x.get("leader") for x in data if x["kind"] == "leader")
            elif event == "cluster" and data["leader"] not in (None, leader.raft):
                seen.setdefault("at", time.monotonic())
                seen["view"] = data
            return "view" in seen and seen["view"]["leader"] in leaders_named

        read_events(resp, both, 15)
        after = seen["view"]
        print(f"new leader pushed {seen['at'] - killed:.2f} s after SIGKILL")
        gone = next(n for n in after["nodes"] if n["id"] == leader.node_id)
        assert gone["state"] == "down"
        new = [n for n in after["nodes"] if n["state"] == "leader"]
        assert len(new) == 1 and new[0]["raft"] == after["leader"]

def test_a_node_with_an_open_stream_stops_without_waiting_for_it(tmp_path):
    """aiohttp waits up to 60 s for running handlers at shutdown: the streams are ended first."""
    single = Cluster(str(tmp_path), size=1).start()
    try:
        single.leader()
        node = single.nodes[0]
        with urllib.request.urlopen(f"{node.url}/v1/raftkv/ui/events", timeout=30) as resp:
            read_events(resp, lambda e, d: e == "cluster", 10)
            node.proc.send_signal(signal.SIGTERM)
            node.proc.wait(20)  # TimeoutExpired if the stream held the node
            assert node.proc.returncode == 0
            with contextlib.suppress(http.client.IncompleteRead):  # cut off mid-chunk: ended all the same
                resp.read()  # returns: the connection closed with the node (the socket timeout is 30 s)
    finally:
        single.stop()
