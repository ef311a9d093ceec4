"""Node addresses as DNS names, as a StatefulSet gives them: every address here is a name
(`localhost`), and one peer's name does not resolve when the others start.

n1 and n2 run each in a mount namespace of its own (unshare) whose /etc/hosts is a file of this
test: it knows `localhost`, and learns LATE, the third peer's name, only once that node runs,
as a pod's name appears in DNS when the pod starts. Without unshare only the first test runs.
LATE sorts below `localhost`, so n1 and n2 dial n3 (only the greater address dials): they must
resolve it. Every node is given all three addresses as peers, itself included, as every pod of
a StatefulSet is given one list.
"""

from __future__ import annotations

import subprocess

import pytest
import requests

from tests.support.cluster import Cluster

LATE = "late-peer.invalid"  # .invalid never resolves through DNS (RFC 6761); /etc/hosts comes first
# $0 is the hosts file, "$@" the node's command: unshare execs, so the node keeps the process id
NAMESPACE = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"']


def own_hosts_file_works(hosts: str) -> bool:
    try:
        r = subprocess.run([*NAMESPACE, hosts, "getent", "hosts", "localhost"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    root = tmp_path_factory.mktemp("dns")
    hosts = str(root / "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost\n")
    namespaced = own_hosts_file_works(hosts)
    cluster = Cluster(str(root))  # free ports, a cluster secret
    ports = [(n.raft.rpartition(":")[2], n.http.rpartition(":")[2]) for n in cluster.nodes]
    rafts = [f"localhost:{ports[0][0]}", f"localhost:{ports[1][0]}", f"{LATE}:{ports[2][0]}"]
    for i, node in enumerate(cluster.nodes):
        node.raft, node.http = rafts[i], f"localhost:{ports[i][1]}"
        node.peers = list(rafts)  # itself included, as one list for every pod of a StatefulSet
    n1, n2, n3 = cluster.nodes
    n3.extra_args += ["--raft-bind", f"127.0.0.1:{ports[2][0]}"]  # its own name need not resolve
    if namespaced:
        n1.prefix = n2.prefix = [*NAMESPACE, hosts]
    try:
        yield cluster, hosts, namespaced
    finally:
        cluster.stop()


def agreed_leader(cluster, nodes):
    """The node all of `nodes` name as leader (Cluster.leader waits for every member to publish itself)."""
    leaders = {(s or {}).get("leader") for s in (n.status() for n in nodes)}
    return cluster.node_by_raft(leaders.pop()) if len(leaders) == 1 and None not in leaders else None


def test_nodes_named_by_host_names_serve_while_a_peer_name_does_not_resolve(named):
    cluster, _, _ = named
    n1, n2, _ = cluster.nodes
    n1.start()
    n2.start()
    leader = cluster.wait_for("a leader of n1 and n2", lambda: agreed_leader(cluster, [n1, n2]), timeout=30)
    follower = n2 if leader is n1 else n1
    assert leader.raft.startswith("localhost:")
    assert requests.put(f"{follower.url}/v1/kv/dns/k", data=b"v1", timeout=10).json() is True
    for node in (n1, n2):
        assert requests.get(f"{node.url}/v1/kv/dns/k?raw&stale", timeout=10).content == b"v1"
        assert requests.get(f"{node.url}/v1/kv/dns/k?raw", timeout=10).content == b"v1"
        with open(node.log_path) as f:
            log = f.read()
        assert f"peer {LATE}:" in log and "does not resolve yet" in log, log[-2000:]
        assert "Traceback" not in log


def test_a_peer_whose_name_resolves_later_is_reached_and_catches_up(named):
    cluster, hosts, namespaced = named
    if not namespaced:
        pytest.skip("unshare cannot give a node its own /etc/hosts here")
    n1, n2, n3 = cluster.nodes
    assert requests.put(f"{n1.url}/v1/kv/dns/late", data=b"before", timeout=10).json() is True
    n3.start()
    with open(hosts, "a") as f:  # in place: the namespaces' bind mounts show this very file
        f.write(f"127.0.0.1 {LATE}\n")

    def n3_has_it():
        try:
            r = requests.get(f"{n3.url}/v1/kv/dns/late?raw&stale", timeout=2)
        except requests.RequestException:
            return False
        return r.status_code == 200 and r.content == b"before"

    cluster.wait_for("n3 to catch up once its name resolves", n3_has_it, timeout=60)
    assert requests.put(f"{n3.url}/v1/kv/dns/late", data=b"after", timeout=10).json() is True  # via the leader
    for node in (n1, n2):
        assert requests.get(f"{node.url}/v1/kv/dns/late?raw", timeout=10).content == b"after"
    assert all(n.alive() for n in cluster.nodes)
    with open(n1.log_path) as f:  # n1 looked the late name up through node.engine.resolver
        assert f"node.engine.resolver: raft: host {LATE} resolves to 127.0.0.1" in f.read()
