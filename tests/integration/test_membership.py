"""Membership changes on real processes: join, grow, shrink, remove the leader, hand over.

Every test checks outcomes: acknowledged writes read back, every node's copy identical,
the configuration as py-consul and curl read it, refusals that changed nothing.
"""

from __future__ import annotations

import base64
import os
import signal
import threading
import time

import consul
import requests

from tests.support.cluster import HOST, Cluster, NodeProcess, free_ports
from tests.support.wait import wait_until


class Writer:
    """Writes keys to the cluster in a thread (bounded count and time), recording the acks."""

    def __init__(self, nodes, count: int = 5000, seconds: float = 60.0) -> None:
        self.nodes, self.count, self.seconds = nodes, count, seconds
        self.acked: dict[str, bytes] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        session = requests.Session()
        for i in range(self.count):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            key, value = f"load/{i:05d}", f"v{i}".encode()
            node = self.nodes[i % len(self.nodes)]
            try:
                r = session.put(f"{node.url}/v1/kv/{key}", data=value, timeout=10)
                if r.status_code == 200 and r.json() is True:
                    self.acked[key] = value
            except requests.RequestException:
                pass


def new_node(cluster: Cluster, node_id: str) -> NodeProcess:
    raft, http = free_ports(2)
    root = cluster.root
    node = NodeProcess(node_id, f"{HOST}:{raft}", f"{HOST}:{http}", os.path.join(root, node_id),
                       os.path.join(root, f"{node_id}.log"), [],
                       [*cluster.secret_args, "--join", ",".join(n.http for n in cluster.nodes)])
    cluster.nodes.append(node)
    node.start()
    return node


def servers(node, **params) -> list[dict]:
    r = requests.get(f"{node.url}/v1/operator/raft/configuration", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["Servers"]


def voters(node) -> set[str]:
    return {s["Address"] for s in servers(node) if s["Voter"]}


def wait_voters(cluster: Cluster, expected: set[str], timeout: float = 60) -> None:
    def views() -> dict[str, set[str] | str]:  # each live node's voters (a request error ends this check)
        seen = {}
        for n in cluster.nodes:
            if n.alive():
                try:
                    seen[n.node_id] = {s["Address"] for s in servers(n, stale="") if s["Voter"]}
                except AssertionError as exc:  # servers() asserts a 200: during a change, not yet
                    seen[n.node_id] = str(exc)
        return seen

    wait_until(f"every node to see voters {sorted(expected)}", views, timeout, explain=cluster.logs,
               until=lambda seen: seen and all(v == expected for v in seen.values()))


def contents(node) -> dict[str, bytes]:
    r = requests.get(f"{node.url}/v1/kv/load/", params={"recurse": "", "stale": ""}, timeout=10)
    if r.status_code == 404:
        return {}
    return {e["Key"]: base64.b64decode(e["Value"] or "") for e in r.json()}


def assert_identical_with_every_ack(cluster: Cluster, acked: dict[str, bytes]) -> None:
    leader = cluster.leader(timeout=30)
    requests.get(f"{leader.url}/v1/kv/load/?recurse", timeout=10)  # a barrier: everything committed is applied
    cluster.wait_applied(leader.status()["commit_index"], timeout=30)
    reference = contents(leader)
    for key, value in acked.items():
        assert reference.get(key) == value, f"acknowledged write {key} lost or changed"
    # The callers drop removed nodes from cluster.nodes: every node left must be running, and hold the same copy.
    assert [n.node_id for n in cluster.nodes if not n.alive()] == [], "a member of the configuration stopped"
    for n in cluster.nodes:
        assert contents(n) == reference, f"{n.node_id}'s copy differs from the leader's"


def remove(node, member: str, **extra) -> requests.Response:
    return requests.delete(f"{node.url}/v1/operator/raft/peer", params={"id": member, **extra}, timeout=20)


def test_grow_to_five_under_load_then_shrink_back(cluster):
    original = set(n.raft for n in cluster.nodes)
    with Writer(list(cluster.nodes)) as writer:
        n4 = new_node(cluster, "n4")
        wait_voters(cluster, original | {n4.raft})
        n5 = new_node(cluster, "n5")
        wait_voters(cluster, original | {n4.raft, n5.raft})
        leader = cluster.leader()
        assert len(servers(leader)) == 5
        # Remove two followers (not the leader) while writes go on.
        gone = [n for n in cluster.nodes[:3] if n is not leader][:2]
        for victim in gone:
            r = remove(leader, victim.node_id)
            assert r.status_code == 200, r.text
            cluster.wait_for(f"{victim.node_id} to stop", lambda v=victim: not v.alive(), timeout=20)
        cluster.nodes = [n for n in cluster.nodes if n not in gone]
        wait_voters(cluster, {n.raft for n in cluster.nodes})
        written = len(writer.acked)
        cluster.wait_for("writes on the new configuration", lambda: len(writer.acked) >= written + 50)
    assert len(writer.acked) > 100, "the writer should have been acknowledged throughout"
    assert_identical_with_every_ack(cluster, writer.acked)
    final = ",".join(sorted(n.raft for n in cluster.nodes))
    for n in cluster.nodes:  # every member logged the change that made the final configuration
        with open(n.log_path) as f:
            assert f"voters {final}; learners none" in f.read(), n.node_id


def test_a_second_concurrent_change_is_refused_and_unknown_members_are_404(cluster):
    leader = cluster.leader()
    n4 = new_node(cluster, "n4")
    # While n4 is being added and promoted, a removal is refused or succeeds alone: never both at once.
    assert remove(leader, "nobody").status_code == 404
    r = requests.delete(f"{leader.url}/v1/operator/raft/peer", timeout=10)
    assert r.status_code == 400
    dead = f"{HOST}:{free_ports(1)[0]}"
    r = requests.put(f"{leader.url}/v1/operator/raft/peer", params={"id": "ghost", "address": dead}, timeout=10)
    assert r.status_code == 409 and "nothing answers" in r.text
    wait_voters(cluster, {n.raft for n in cluster.nodes})
    results = []

    def change(member):
        results.append(remove(leader, member).status_code)

    a, b = cluster.nodes[0] if cluster.nodes[0] is not leader else cluster.nodes[1], n4
    threads = [threading.Thread(target=change, args=(m.node_id,)) for m in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [200, 409], results
    assert len(voters(leader)) == 3


def test_removing_the_leader_hands_over_first(cluster):
    leader = cluster.leader()
    with Writer([n for n in cluster.nodes if n is not leader], seconds=20) as writer:
        cluster.wait_for("the writer to be acknowledged", lambda: len(writer.acked) >= 20)
        follower = next(n for n in cluster.nodes if n is not leader)
        r = remove(follower, leader.node_id)  # sent to a follower: it forwards to the leader
        assert r.status_code == 200, r.text
        cluster.wait_for("the old leader to stop", lambda: not leader.alive(), timeout=20)
        written = len(writer.acked)
        cluster.wait_for("writes after the removal", lambda: len(writer.acked) >= written + 20)
    rest = [n for n in cluster.nodes if n is not leader]
    cluster.nodes = rest
    wait_voters(cluster, {n.raft for n in rest})
    assert_identical_with_every_ack(cluster, writer.acked)
    # Two voters: removing one more would leave no quorum of reachable voters once it is down.
    rest[0].kill()
    r = remove(rest[1], rest[0].node_id)
    assert r.status_code in (409, 503), r.text


def test_membership_survives_restarts_and_a_joined_node_needs_no_join(cluster):
    n4 = new_node(cluster, "n4")
    wait_voters(cluster, {n.raft for n in cluster.nodes})
    r = requests.put(f"{n4.url}/v1/kv/load/after-join", data=b"x", timeout=10)
    assert r.status_code == 200
    n4.kill()
    n4.extra_args = list(cluster.secret_args)  # a restart of a joined node needs no --join
    n4.start()
    for n in cluster.nodes:  # then the whole cluster, SIGKILLed at once
        n.kill()
    for n in cluster.nodes:
        n.start()
    wait_voters(cluster, {n.raft for n in cluster.nodes})
    assert_identical_with_every_ack(cluster, {"load/after-join": b"x"})


def test_py_consul_reads_the_configuration_and_transfers_leadership(cluster):
    leader = cluster.leader()
    client = consul.Consul(host=HOST, port=int(cluster.nodes[0].http.rpartition(":")[2]))
    config = client.operator.raft_config()
    assert {s["Address"] for s in config["Servers"]} == {n.raft for n in cluster.nodes}
    assert [s["Address"] for s in config["Servers"] if s["Leader"]] == [leader.raft]
    assert all(s["Voter"] for s in config["Servers"])
    target = next(n for n in cluster.nodes if n is not leader)
    assert client.operator.raft_transfer_leader(peer_id=target.node_id) is True
    assert cluster.leader().raft == target.raft
    assert requests.get(f"{leader.url}/v1/status/peers", timeout=5).json() == sorted(n.raft for n in cluster.nodes)


def test_sigterm_on_the_leader_hands_leadership_over(cluster):
    leader = cluster.leader()
    term = leader.status()["term"]
    leader.signal(signal.SIGTERM)
    assert leader.proc.wait(20) == 0
    with open(leader.log_path) as f:
        assert "leadership handed over to" in f.read()
    rest = [n for n in cluster.nodes if n is not leader]
    new = cluster.leader(among=rest)
    assert new.status()["term"] == term + 1, "a hand-over is one election, started at once"


def test_the_survivor_of_a_lost_majority_restarts_alone_with_force_new_cluster(cluster):
    leader = cluster.leader()
    for i in range(20):
        assert requests.put(f"{leader.url}/v1/kv/load/k{i}", data=b"v", timeout=10).status_code == 200
    survivor = next(n for n in cluster.nodes if n is not leader)
    cluster.wait_applied(leader.status()["commit_index"], nodes=[survivor])
    for n in cluster.nodes:
        n.kill()
    survivor.start()  # alone, without the flag: no quorum, no leader
    wait_until("the survivor to answer", survivor.status, timeout=20)
    time.sleep(2)  # not synchronisation, the point is the duration: two election timeouts and still no leader
    assert survivor.status()["leader"] is None
    survivor.kill()
    survivor.extra_args = [*survivor.extra_args, "--force-new-cluster"]
    survivor.start()
    cluster.nodes = [survivor]
    wait_voters(cluster, {survivor.raft})
    assert requests.put(f"{survivor.url}/v1/kv/load/after", data=b"x", timeout=10).status_code == 200
    assert len(contents(survivor)) == 21
    survivor.kill()
    survivor.extra_args = survivor.extra_args[:-1]  # its restarts keep the new configuration
    survivor.start()
    cluster.leader()
    n4 = new_node(cluster, "n4")  # and it grows again
    wait_voters(cluster, {survivor.raft, n4.raft})
    assert_identical_with_every_ack(cluster, {"load/after": b"x"})
