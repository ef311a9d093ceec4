"""Health on a real cluster: /readyz and Consul's autopilot health follow the cluster while its
nodes are paused (SIGSTOP) and resumed (issue 13)."""

from __future__ import annotations

import signal

import requests


def readyz(node, **params) -> tuple[int, str]:
    r = requests.get(f"{node.url}/readyz", params=params, timeout=10)
    return r.status_code, r.text


def autopilot(node) -> tuple[int, dict]:
    r = requests.get(f"{node.url}/v1/operator/autopilot/health", timeout=10)
    return r.status_code, r.json()


def test_readyz_and_autopilot_health_follow_paused_and_resumed_nodes(cluster):
    leader = cluster.leader()
    follower, other = cluster.followers()
    assert requests.put(f"{leader.url}/v1/kv/h", data=b"1", timeout=10).json() is True
    for node in cluster.nodes:
        assert readyz(node, sync="", timeout="5s") == (200, "[+]node ok\n[+]leader ok\n[+]store ok\n[+]disk ok\n")
        assert requests.get(f"{node.url}/livez", timeout=10).text == "ok\n"
    status, body = cluster.wait_for("a healthy cluster", lambda: (s := autopilot(follower))[0] == 200 and s)
    assert body["FailureTolerance"] == 1 and sum(s["Leader"] for s in body["Servers"]) == 1

    other.signal(signal.SIGSTOP)  # one voter silent: the cluster serves, autopilot says it is unhealthy
    try:
        # A load-slowed hello from the other follower may make the answer 429 before the paused
        # node's silence passes the threshold: wait for the paused node itself.
        status, body = cluster.wait_for("autopilot to see the paused node", lambda: (
            (s := autopilot(leader))[0] == 429
            and {v["Address"]: v["Healthy"] for v in s[1]["Servers"]}[other.raft] is False and s))
        assert body["FailureTolerance"] == 0
        assert readyz(follower)[0] == 200  # a majority still has a leader
        leader.signal(signal.SIGSTOP)  # now the follower is cut off from every other node
        try:
            code, text = cluster.wait_for("the follower to lose its leader", lambda: (
                (r := readyz(follower))[0] == 503 and r))
            assert "[-]leader: no leader known" in text
            assert readyz(follower, noleader="")[0] == 200
        finally:
            leader.signal(signal.SIGCONT)
    finally:
        other.signal(signal.SIGCONT)
    cluster.wait_for("every node ready again", lambda: all(readyz(n)[0] == 200 for n in cluster.nodes), timeout=30)
    cluster.wait_for("a healthy cluster again", lambda: autopilot(cluster.nodes[0])[0] == 200, timeout=30)
