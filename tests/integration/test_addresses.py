"""Listening addresses: advertised names may differ from bind addresses, and each port is bound
to the given address alone (PySyncObj would bind every interface, and it unpickles what it reads)."""

from __future__ import annotations

import os
import socket

import requests

from tests.support.cluster import Cluster, NodeProcess, free_ports


def reachable(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def test_cluster_with_advertised_names_and_bind_addresses(tmp_path):
    ports = free_ports(6)
    rafts = [f"localhost:{p}" for p in ports[:3]]  # advertised: what peers dial
    nodes = []
    for i in range(3):
        nodes.append(NodeProcess(
            f"n{i + 1}", rafts[i], f"localhost:{ports[3 + i]}", os.path.join(tmp_path, f"n{i + 1}"),
            os.path.join(tmp_path, f"n{i + 1}.log"), [r for r in rafts if r != rafts[i]],
            ["--raft-bind", f"127.0.0.1:{ports[i]}", "--http-bind", f"127.0.0.1:{ports[3 + i]}"],
        ))
    cluster = Cluster.__new__(Cluster)
    cluster.root, cluster.nodes = str(tmp_path), nodes
    cluster.start()
    try:
        leader = cluster.leader()
        assert leader.raft.startswith("localhost:")
        follower = next(n for n in nodes if n is not leader)
        assert requests.put(f"{follower.url}/v1/kv/k", data=b"v", timeout=10).json() is True
        assert requests.get(f"{nodes[2].url}/v1/kv/k?raw", timeout=10).content == b"v"
        for port in ports:  # bound to 127.0.0.1 only: another loopback address is refused
            assert reachable("127.0.0.1", port)
            assert not reachable("127.0.0.2", port), f"port {port} listens beyond its bind address"
    finally:
        cluster.stop()
