"""A cluster secret rotated as README "Cluster secret" says: three rounds of rolling restarts,
writes acknowledged throughout, every node back in the cluster under the new secret only."""

from __future__ import annotations

import pytest
import requests

from tests.support.cluster import Cluster
from tests.support.raft_peer import secure_session

OLD, NEW = "o" * 64, "n" * 64


def write_secret(path: str, *secrets: str) -> None:
    with open(path, "w") as f:
        f.write("\n".join(secrets) + "\n")


def test_a_rolling_rotation_never_splits_the_cluster(tmp_path):
    cluster = Cluster(str(tmp_path / "c"))
    secret_file = cluster.secret_args[1]
    write_secret(secret_file, OLD)
    cluster.start()
    written = 0
    try:
        cluster.leader()
        for round_secrets in ((OLD, NEW), (NEW, OLD), (NEW,)):
            write_secret(secret_file, *round_secrets)
            leader = cluster.leader()
            for node in sorted(cluster.nodes, key=lambda n: n is leader):  # the leader last
                node.stop()
                node.start()
                new_leader = cluster.leader(timeout=30)
                written += 1
                r = requests.put(f"{new_leader.url}/v1/kv/rotation/{written}", data=str(written), timeout=10)
                assert r.status_code == 200 and r.json() is True, r.text
        index = int(requests.get(f"{cluster.leader().url}/v1/kv/rotation/1", timeout=10).headers["X-Consul-Index"])
        cluster.wait_applied(index)
        for node in cluster.nodes:
            keys = requests.get(f"{node.url}/v1/kv/rotation/", params={"keys": "", "stale": ""}, timeout=10).json()
            assert len(keys) == written == 9
        assert "did not prove the cluster secret" not in cluster.logs(), "a pairing failed during the roll"
        # OLD is no longer accepted anywhere; NEW is.
        old_file = tmp_path / "old.secret"
        write_secret(str(old_file), OLD)
        for node in cluster.nodes:
            with pytest.raises(AssertionError, match="hung up during the handshake"):
                secure_session(node, str(old_file))
            sock, _ = secure_session(node, secret_file)
            sock.close()
    finally:
        cluster.stop()
