"""api/openapi.yaml against a live 3-node cluster: schemathesis generates requests for every
operation, valid and invalid, and checks each answer against the document.

Checks: no 5xx, status codes, content types, headers and bodies as documented, and invalid
input refused with a 4xx. Requests go to a follower, so forwarding is fuzzed too. The hooks in
openapi_fuzz_hooks.py keep keys under fuzz/, blocking queries short and the operator API away
from real members and addresses. ACLs are on (default allow) and every request carries the
management token, so that the ACL routes create, read and delete policies and tokens.

Schemathesis runs as its CLI in a subprocess: its report names each failure with a curl line
that reproduces it, and nothing of it runs inside pytest (warnings are errors there).
Longer runs: RAFTKV_FUZZ_SCALE=10 (cases per operation and phase, 40 in CI, times 10) and
RAFTKV_FUZZ_SEED=random (CI pins a seed, so that a run is reproducible).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import requests

from tests.support.cluster import Cluster
from tests.support.fuzz import scaled
from tests.support.wait import wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DOCUMENT = os.path.join(ROOT, "api", "openapi.yaml")
EXAMPLES = scaled(40)  # cases per operation and phase
SEED = os.environ.get("RAFTKV_FUZZ_SEED", "20261202")
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance,negative_data_rejection")


MANAGEMENT = "fuzz-management-0123456789"  # every request carries it: the ACL routes are fuzzed for real


@pytest.fixture(scope="module")
def fuzz_cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "mgmt.token").write_text(MANAGEMENT + "\n")
    c = Cluster(str(root / "c"), extra_args=["--acl", "allow", "--acl-initial-management-token-file",
                                             str(root / "mgmt.token")]).start()
    try:
        leader = c.leader()
        wait_until("the initial management token", lambda: requests.get(
            f"{leader.url}/v1/acl/token/self", headers={"X-Consul-Token": MANAGEMENT}, timeout=5).status_code == 200,
            30, explain=c.logs)
        yield c
    finally:
        c.stop()


def run_schemathesis(url: str, workdir: str) -> subprocess.CompletedProcess:
    cmd = [os.path.join(os.path.dirname(sys.executable), "schemathesis"),
           "--config-file", os.path.join(HERE, "openapi_fuzz.toml"), "--no-color",
           "run", DOCUMENT, "--url", url, "--checks", CHECKS, "--max-examples", str(EXAMPLES),
           "--workers", "1", "--request-timeout", "20", "--generation-database", "none",
           "--header", f"X-Consul-Token: {MANAGEMENT}"]
    if SEED != "random":
        cmd += ["--seed", SEED]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.integration.openapi_fuzz_hooks",
           "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
    # 47 operations x 40 cases: 230 s on the shared 2-core machine (the console added 9 operations, ~30 s)
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=420,
                          stdin=subprocess.DEVNULL)


@pytest.mark.timeout(480)  # the schemathesis run's own limit (420 s) and the cluster's start
def test_every_operation_answers_as_documented_under_fuzzing(fuzz_cluster, tmp_path):
    leader = fuzz_cluster.leader()
    assert requests.put(f"{leader.url}/v1/kv/outside", data=b"kept", timeout=10).json() is True
    result = run_schemathesis(fuzz_cluster.followers()[0].url, str(tmp_path))
    print("\n".join(line for line in result.stdout.splitlines() if "generated" in line or "Seed:" in line))
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-3000:]
    selected = re.search(r"(\d+) selected / (\d+) total", result.stdout)
    assert selected and selected[1] == selected[2] and f"Tested: {selected[1]}" in result.stdout, result.stdout[-3000:]
    # The cluster survived it whole, and nothing outside the fuzzing prefix was touched.
    assert all(n.alive() for n in fuzz_cluster.nodes), fuzz_cluster.logs()
    leader = fuzz_cluster.leader()
    config = requests.get(f"{leader.url}/v1/operator/raft/configuration", timeout=10).json()
    assert sorted(s["Address"] for s in config["Servers"] if s["Voter"]) == sorted(n.raft for n in fuzz_cluster.nodes)
    assert requests.get(f"{leader.url}/v1/kv/outside", params={"raw": ""}, timeout=10).content == b"kept"
    keys = requests.get(f"{leader.url}/v1/kv/", params={"keys": ""}, timeout=10).json()
    assert [k for k in keys if not k.startswith("fuzz/")] == ["outside"]
