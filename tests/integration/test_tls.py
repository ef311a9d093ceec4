"""TLS for HTTP on real 3-node clusters: HTTPS served by both fronts, forwarding between nodes
over HTTPS verified against the CA, client certificates (verify_incoming), py-consul and the CLI.

Two clusters for the module: `plain_tls` (lean front, any client with the CA) and `mutual_tls`
(aiohttp front, --tls-verify-incoming: every client, nodes included, shows a certificate); and
`raftkv up --tls` with its own CA."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
from dataclasses import dataclass

import consul
import pytest
import requests

from api.cli import main as raftkv
from tests.integration.test_up import consecutive_free_ports, start_up, stop_up, wait_for_line
from tests.support.certs import Issued, Pki
from tests.support.cluster import HOST, Cluster, NodeProcess, free_ports
from tests.support.wait import wait_until


@dataclass(frozen=True)
class Material:
    ca: str
    node: Issued  # every node serves this one (they all run on 127.0.0.1)
    client: Issued
    other_ca: str  # signs nothing of ours
    stranger: Issued  # signed by the other CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Material:
    folder = tmp_path_factory.mktemp("pki")
    ours, theirs = Pki(folder / "ours"), Pki(folder / "theirs")
    return Material(ours.ca, ours.issue("node"), ours.issue("client"), theirs.ca, theirs.issue("stranger"))


def _harness_ssl(pki: Material) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki.ca)
    ctx.load_cert_chain(pki.client.cert, pki.client.key)
    return ctx


def _tls_cluster(root, pki: Material, *more_args: str):
    args = ["--tls-cert-file", pki.node.cert, "--tls-key-file", pki.node.key, "--tls-ca-file", pki.ca, *more_args]
    c = Cluster(str(root), extra_args=args, client_ssl=_harness_ssl(pki)).start()
    try:
        c.leader(timeout=30)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def plain_tls(tmp_path_factory, pki):
    yield from _tls_cluster(tmp_path_factory.mktemp("tls"), pki)


@pytest.fixture(scope="module")
def mutual_tls(tmp_path_factory, pki):
    yield from _tls_cluster(tmp_path_factory.mktemp("mtls"), pki, "--tls-verify-incoming", "--http-front", "aiohttp")


def forwarded(node) -> int:
    return node.status()["forwarded"]["ok"]


def written_and_forwarded(cluster, key: str, **tls) -> None:
    """A write sent to a follower, a default read there answered by the leader over HTTPS, and
    the value read back from every node's own copy."""
    follower = cluster.followers()[0]
    assert requests.put(f"{follower.url}/v1/kv/{key}", data=b"over tls", timeout=10, **tls).json() is True
    before = forwarded(follower)
    r = requests.get(f"{follower.url}/v1/kv/{key}?raw", timeout=10, **tls)
    assert (r.status_code, r.content) == (200, b"over tls")
    assert forwarded(follower) == before + 1, "the default read was forwarded to the leader"
    for node in cluster.nodes:
        wait_until(f"{node.node_id} to apply {key}", lambda node=node: requests.get(
            f"{node.url}/v1/kv/{key}", params={"raw": "", "stale": ""}, timeout=10, **tls).content == b"over tls", 10)


def test_tls_a_write_through_a_follower_is_read_back_everywhere_and_reads_forward_over_https(plain_tls, pki):
    written_and_forwarded(plain_tls, "tls/forwarded", verify=pki.ca)


def test_tls_the_lean_front_hands_a_tls_connection_to_aiohttp(plain_tls, pki):
    node = plain_tls.nodes[0]
    host, port = node.http.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), timeout=10, context=ssl.create_default_context(cafile=pki.ca))
    try:
        answers = []
        for target in ("/v1/kv/tls/lean", "/v1/kv/tls/?recurse&stale", "/v1/kv/tls/lean?stale"):
            conn.request("PUT" if not answers else "GET", target, body=b"x" if not answers else None)
            resp = conn.getresponse()
            answers.append((resp.status, resp.getheader("Server") or "lean", resp.read(), conn.sock))
        (s1, by1, b1, sock1), (s2, by2, b2, sock2), (s3, by3, _, sock3) = answers
        assert (s1, by1, b1) == (200, "lean", b"true")
        assert s2 == 200 and "aiohttp" in by2 and b'"Key": "tls/lean"' in b2
        assert s3 == 200 and "aiohttp" in by3, "the connection stays aiohttp's"
        assert sock1 is sock2 is sock3, "one TLS connection throughout"
    finally:
        conn.close()


def test_tls_plain_http_and_a_wrong_ca_are_refused(plain_tls, pki):
    node = plain_tls.nodes[1]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{node.http}/v1/kv/tls/forwarded", timeout=10)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{node.url}/v1/kv/tls/forwarded", timeout=10, verify=pki.other_ca)
    assert node.alive() and node.status() is not None


def test_tls_py_consul_over_https_with_the_ca(plain_tls, pki):
    for i, node in enumerate(plain_tls.nodes):
        host, port = node.http.rsplit(":", 1)
        c = consul.Consul(host=host, port=int(port), scheme="https", verify=pki.ca)
        assert c.kv.put(f"tls/pyconsul/{i}", f"v{i}") is True
        assert c.kv.get(f"tls/pyconsul/{i}")[1]["Value"] == f"v{i}".encode()


def test_tls_cli_with_https_and_a_ca_file(plain_tls, pki, capsys, monkeypatch):
    addr = f"https://{plain_tls.followers()[0].http}"
    assert raftkv(["kv", "put", "--addr", addr, "--ca-file", pki.ca, "tls/cli", "from the cli"]) == 0
    monkeypatch.setenv("CONSUL_CACERT", pki.ca)  # Consul's variable works as well as --ca-file
    assert raftkv(["kv", "get", "--addr", addr, "tls/cli"]) == 0
    assert raftkv(["status", "--addr", addr]) == 0  # asks every member, by its scheme-less address
    out = capsys.readouterr().out
    assert "from the cli" in out and " down " not in out and out.count("127.0.0.1:") >= 6

    monkeypatch.delenv("CONSUL_CACERT")
    assert raftkv(["kv", "get", "--addr", addr, "--ca-file", pki.other_ca, "tls/cli"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "certificate is not trusted" in err, err


def test_tls_bench_against_https_nodes(plain_tls, pki, capsys, tmp_path):
    addr = ",".join(f"https://{n.http}" for n in plain_tls.nodes)
    assert raftkv(["bench", "--addr", addr, "--ca-file", pki.other_ca, "--no-ceiling"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "certificate is not trusted" in err, err
    r = subprocess.run([sys.executable, "-m", "api.cli", "bench", "--addr", addr, "--ca-file", pki.ca, "--no-ceiling",
                        "--workloads", "put", "--concurrency", "2", "--duration", "0.5", "--warmup", "0",
                        "--out", str(tmp_path), "--label", "tls"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    [point] = json.loads((tmp_path / "bench-tls.json").read_text())["runs"]["tls"]["points"]
    assert point["ops_per_s"] > 0 and point["errors"] == 0


def test_tls_verify_incoming_refuses_clients_without_a_ca_signed_certificate(mutual_tls, pki, capsys):
    node = mutual_tls.nodes[0]
    with pytest.raises((requests.exceptions.SSLError, requests.ConnectionError)):
        requests.get(f"{node.url}/v1/status/leader", timeout=10, verify=pki.ca)
    with pytest.raises((requests.exceptions.SSLError, requests.ConnectionError)):
        requests.get(f"{node.url}/v1/status/leader", timeout=10, verify=pki.ca,
                     cert=(pki.stranger.cert, pki.stranger.key))
    host, port = node.http.rsplit(":", 1)
    c = consul.Consul(host=host, port=int(port), scheme="https", verify=pki.ca, cert=(pki.client.cert, pki.client.key))
    assert c.kv.put("mtls/pyconsul", "yes") is True and c.kv.get("mtls/pyconsul")[1]["Value"] == b"yes"

    addr = f"https://{node.http}"
    assert raftkv(["kv", "get", "--addr", addr, "--ca-file", pki.ca, "mtls/pyconsul"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "require a client certificate" in err, err
    assert raftkv(["kv", "get", "--addr", addr, "--ca-file", pki.ca, "--client-cert", pki.client.cert,
                   "--client-key", pki.client.key, "mtls/pyconsul"]) == 0
    assert capsys.readouterr().out == "yes\n"


def test_tls_verify_incoming_forwarding_presents_the_node_certificate(mutual_tls, pki):
    written_and_forwarded(mutual_tls, "mtls/forwarded", verify=pki.ca, cert=(pki.client.cert, pki.client.key))


def test_tls_a_node_joins_over_https_with_scheme_less_addresses(mutual_tls, pki):
    """Last in the module: the cluster grows to four. --join names members by HOST:PORT; the
    new node asks them over HTTPS, as it serves HTTPS itself, and presents its certificate."""
    raft, http = free_ports(2)
    root = mutual_tls.root
    n4 = NodeProcess("n4", f"{HOST}:{raft}", f"{HOST}:{http}", f"{root}/n4", f"{root}/n4.log", [],
                     [*mutual_tls.nodes[0].extra_args, "--join", ",".join(n.http for n in mutual_tls.nodes)],
                     client_ssl=_harness_ssl(pki))
    mutual_tls.nodes.append(n4)
    n4.start()
    tls = {"verify": pki.ca, "cert": (pki.client.cert, pki.client.key), "timeout": 10}

    def voters() -> set[str]:
        servers = requests.get(f"{mutual_tls.nodes[0].url}/v1/operator/raft/configuration", **tls).json()["Servers"]
        return {s["Address"] for s in servers if s["Voter"]}

    wait_until("n4 to become a voter", lambda: n4.raft in voters(), 30, explain=mutual_tls.logs)
    r = requests.get(f"{n4.url}/v1/kv/mtls/pyconsul?raw", **tls)  # a default read: forwarded to the leader
    assert (r.status_code, r.content) == (200, b"yes")
    # Back to three voters before the module's cluster stops (a four-node cluster stopping one
    # node at a time loses its quorum half-way, and its last leader waits out a hand-over).
    r = requests.delete(f"{mutual_tls.nodes[1].url}/v1/operator/raft/peer", params={"id": "n4"}, **tls)
    assert r.status_code == 200, r.text
    wait_until("n4 to be removed", lambda: n4.raft not in voters(), 30, explain=mutual_tls.logs)
    n4.stop()
    mutual_tls.nodes.remove(n4)


def test_tls_up_makes_its_ca_and_serves_https(tmp_path):
    http = consecutive_free_ports(1)
    raft = consecutive_free_ports(1, http + 100)
    data = tmp_path / "data"
    proc = start_up(data, http, raft, "--tls", "--nodes", "1")  # one node: the certificates are what is tested
    try:
        ca = str(data / "tls" / "ca.pem")
        line = wait_for_line(proc, "Try: curl", 60)
        assert f"curl --cacert {ca} -X PUT --data-binary hello https://{HOST}:{http}/v1/kv/greeting" in line
        r = requests.put(f"https://{HOST}:{http}/v1/kv/greeting", data=b"hello", verify=ca, timeout=10)
        assert r.json() is True
        assert requests.get(f"https://{HOST}:{http}/v1/kv/greeting?raw", verify=ca, timeout=10).content == b"hello"
        keys = sorted(p for p in os.listdir(data / "tls") if p.endswith("-key.pem"))
        assert keys == ["ca-key.pem", "n1-key.pem"]
        assert all(os.stat(data / "tls" / k).st_mode & 0o777 == 0o600 for k in keys)
    finally:
        out = stop_up(proc)
    assert f"n1  https://{HOST}:{http}" in out and f"TLS: the nodes' CA is {ca}" in out
