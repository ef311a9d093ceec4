"""The image's HEALTHCHECK command (docker/Dockerfile), run as Docker would run it, against real
nodes: healthy while a node is ready, unhealthy once it has lost its quorum."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.cluster import Cluster

DOCKERFILE = os.path.join(os.path.dirname(__file__), "..", "..", "docker", "Dockerfile")


def healthcheck_command(http: str) -> list[str]:
    """The exec form after HEALTHCHECK's CMD, aimed at `http` instead of the image's 127.0.0.1:8500."""
    with open(DOCKERFILE) as f:
        text = f.read().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("HEALTHCHECK ")]
    command = json.loads(line.split(" CMD ", 1)[1])
    assert command[0] == "python" and any("127.0.0.1:8500" in part for part in command)
    return [sys.executable, *(part.replace("127.0.0.1:8500", http) for part in command[1:])]


def healthy(http: str) -> bool:
    done = subprocess.run(healthcheck_command(http), capture_output=True, text=True, timeout=10)
    if done.returncode != 0:  # what `docker inspect` shows: one line, no traceback
        assert done.stderr.startswith("not ready: ") and done.stderr.count("\n") == 1, done.stderr
    return done.returncode == 0


def test_the_image_healthcheck_passes_when_ready_and_fails_without_a_quorum(tmp_path):
    cluster = Cluster(str(tmp_path)).start()
    try:
        leader = cluster.leader()
        assert all(healthy(n.http) for n in cluster.nodes)
        for node in cluster.nodes:
            if node is not leader:
                node.kill()
        cluster.wait_for("the lone node's health check to fail", lambda: not healthy(leader.http), timeout=30)
        assert leader.alive()  # unhealthy, not dead: Docker reports it, restart policies decide
    finally:
        cluster.stop()
