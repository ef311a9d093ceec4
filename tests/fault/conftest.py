"""Fixtures of the fault tests."""

from __future__ import annotations

import os

import pytest

from loadtest.chaos.network.relay import Relay
from tests.support.cluster import HOST, Cluster, NodeProcess, free_ports


@pytest.fixture
def relayed_cluster(tmp_path):
    """A running 3-node cluster whose nodes reach each other only through a relay (each advertises
    a relay address and binds a real one): (cluster, relay), stopped afterwards."""
    root = str(tmp_path)
    ports = free_ports(9)
    adv, real, http = ([f"{HOST}:{p}" for p in ports[i:i + 3]] for i in (0, 3, 6))
    nodes = [NodeProcess(f"n{i + 1}", adv[i], http[i], os.path.join(root, f"n{i + 1}"),
                         os.path.join(root, f"n{i + 1}.log"), [a for a in adv if a != adv[i]], ["--raft-bind", real[i]])
             for i in range(3)]
    cluster = Cluster.__new__(Cluster)
    cluster.root, cluster.nodes = root, nodes
    with Relay(dict(zip(adv, real, strict=True))) as relay:
        cluster.start()
        try:
            yield cluster, relay
        finally:
            cluster.stop()
