"""docker/k8s/prestop.py against real nodes: a 3-node cluster whose node ids are pod names
(raftkv-0..2), and a stand-in for the Kubernetes API (HTTPS on 127.0.0.1 with a CA of this
test, as the pod's service account sees it) that serves the StatefulSet. The hook removes the
member only when the StatefulSet's replicas are below the pod's ordinal."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.support.certs import Pki
from tests.support.cluster import Cluster, free_ports

PRESTOP = os.path.join(os.path.dirname(__file__), "..", "..", "docker", "k8s", "prestop.py")


def load_prestop():
    spec = importlib.util.spec_from_file_location("prestop_under_test", PRESTOP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class KubernetesApi:
    """GET of one StatefulSet, with its replicas as the test sets them; records what it was asked."""

    def __init__(self, pki: Pki) -> None:
        self.replicas = 3
        self.asked: list[tuple[str, str | None]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                api.asked.append((self.path, self.headers.get("Authorization")))
                body = json.dumps({"metadata": {"name": "raftkv"}, "spec": {"replicas": api.replicas}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        issued = pki.issue("kubernetes")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(issued.cert, issued.key)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://localhost:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def pods(tmp_path_factory):
    root = tmp_path_factory.mktemp("prestop")
    cluster = Cluster(str(root / "cluster"))
    for i, node in enumerate(cluster.nodes):
        node.node_id = f"raftkv-{i}"
    pki = Pki(root / "pki")
    api = KubernetesApi(pki)
    account = root / "serviceaccount"  # what Kubernetes mounts in the pod
    account.mkdir()
    (account / "token").write_text("service-account-token\n")
    shutil.copy(pki.ca, account / "ca.crt")
    cluster.start()
    try:
        cluster.leader()
        yield cluster, api, str(account)
    finally:
        api.close()
        cluster.stop()


def hook(monkeypatch, cluster, api_url: str, account: str, pod: str):
    prestop = load_prestop()
    prestop.API, prestop.ACCOUNT = api_url, account
    prestop.CLIENT_SERVICE = cluster.nodes[0].url  # stands for the client service
    prestop.TOKEN_FILE = os.path.join(account, "absent")  # ACLs off in this cluster
    prestop.REMOVE_FOR_S = 20.0
    monkeypatch.setenv("POD_NAME", pod)
    monkeypatch.setenv("POD_NAMESPACE", "ns")
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])  # `raftkv`
    return prestop


def voter_ids(cluster) -> set[str]:
    servers = requests.get(f"{cluster.nodes[0].url}/v1/operator/raft/configuration", timeout=10).json()["Servers"]
    return {s["ID"] for s in servers if s["Voter"]}


def test_a_restart_keeps_the_member_and_a_scale_down_removes_it(monkeypatch, pods):
    cluster, api, account = pods
    assert voter_ids(cluster) == {"raftkv-0", "raftkv-1", "raftkv-2"}
    # a rolling restart of raftkv-2: replicas unchanged
    assert hook(monkeypatch, cluster, api.url, account, "raftkv-2").main() == 0
    assert api.asked == [("/apis/apps/v1/namespaces/ns/statefulsets/raftkv", "Bearer service-account-token")]
    assert voter_ids(cluster) == {"raftkv-0", "raftkv-1", "raftkv-2"}
    # the API cannot be read: stays a member
    (closed,) = free_ports(1)
    assert hook(monkeypatch, cluster, f"https://localhost:{closed}", account, "raftkv-2").main() == 0
    assert voter_ids(cluster) == {"raftkv-0", "raftkv-1", "raftkv-2"}
    # scaled to 2: raftkv-2 leaves, and its node stops by itself
    api.replicas = 2
    assert hook(monkeypatch, cluster, api.url, account, "raftkv-2").main() == 0
    assert voter_ids(cluster) == {"raftkv-0", "raftkv-1"}
    removed = cluster.nodes[2]
    cluster.wait_for("the removed node to stop", lambda: not removed.alive(), timeout=30)
    # a second run (an answer lost, the hook run again) finds it gone and is done
    assert hook(monkeypatch, cluster, api.url, account, "raftkv-2").main() == 0
    assert requests.put(f"{cluster.nodes[1].url}/v1/kv/after", data=b"2 voters", timeout=10).json() is True
