"""ACLs on a real 3-node cluster started with --acl deny, driven by the unmodified py-consul:
the matrix of tokens (anonymous, read on a prefix, write on a prefix with a deny rule inside,
management) against every route, through every node. Nodes n1 and n2 serve hot KV requests on
the lean front, n3 on aiohttp alone, so both fronts are checked. The state survives a restart
of the whole cluster (snapshots taken every few entries, so it goes through one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import consul
import pytest
from consul.exceptions import ACLPermissionDenied, ClientError

from tests.support.cluster import Cluster
from tests.support.wait import wait_until

ANONYMOUS = "00000000-0000-0000-0000-000000000002"


def client(node, token: str | None = None) -> consul.Consul:
    host, port = node.http.rsplit(":", 1)
    return consul.Consul(host=host, port=int(port), token=token)


def call(node, method: str, path: str, token: str | None = None, body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"X-Consul-Token": token} if token else {}
    req = urllib.request.Request(f"{node.url}{path}", data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def wait_for_leader(cluster: Cluster, token: str | None) -> None:
    """Every node agrees on a leader that has published its HTTP address (status needs operator:read)."""
    def agreed():
        docs = [json.loads(body) for status, body in (call(n, "GET", "/v1/raftkv/status", token)
                                                      for n in cluster.nodes) if status == 200]
        return len(docs) == 3 and len({d["leader"] for d in docs}) == 1 and all(d["leader_http"] for d in docs)
    wait_until("an agreed leader with its HTTP address", agreed, 30, explain=cluster.logs)


@pytest.fixture(scope="module")
def acl_cluster(tmp_path_factory):
    c = Cluster(str(tmp_path_factory.mktemp("acl")), extra_args=["--acl", "deny", "--snapshot-entries", "20"])
    c.nodes[2].extra_args += ["--http-front", "aiohttp"]
    c.start()
    try:
        wait_until("a leader", lambda: all(call(n, "GET", "/v1/status/leader")[1] not in (b'""', b"")
                                           for n in c.nodes), 30, explain=c.logs)
        boot = client(c.nodes[1]).acl.bootstrap()  # through a follower, or the leader: any node
        tokens = {"mgmt": boot["SecretID"]}
        wait_for_leader(c, tokens["mgmt"])
        mgmt = client(c.nodes[0], tokens["mgmt"])
        mgmt.acl.policy.create("app-read", rules={"key_prefix": {"app/": {"policy": "read"}}})
        mgmt.acl.policy.create("app-write", rules={"key_prefix": {"app/": {"policy": "write"},
                                                                  "app/secret/": {"policy": "deny"}}})
        tokens["read"] = mgmt.acl.token.create(policies_name=["app-read"], description="reader")["SecretID"]
        tokens["write"] = mgmt.acl.token.create(policies_name=["app-write"], description="writer")["SecretID"]
        for name in ("read", "write"):  # replicated to every node before the matrix uses it there
            wait_until(f"token {name} on every node",
                       lambda name=name: all(call(n, "GET", "/v1/acl/token/self", tokens[name])[0] == 200
                                             for n in c.nodes))
        assert mgmt.kv.put("app/x", "1") and mgmt.kv.put("app/secret/k", "s") and mgmt.kv.put("other", "o")
        yield c, tokens
    finally:
        c.stop()


def test_acl_matrix_for_kv_txn_snapshot_operator_and_acl_routes_through_every_node(acl_cluster):
    cluster, t = acl_cluster
    for node in cluster.nodes:
        anon, read, write, mgmt = (client(node, tok) for tok in (None, t["read"], t["write"], t["mgmt"]))
        with pytest.raises(ACLPermissionDenied, match=f"AccessorID '{ANONYMOUS}' lacks permission 'key:read'"):
            anon.kv.get("app/x")
        assert read.kv.get("app/x")[1]["Value"] == b"1" and write.kv.get("app/x")[1]["Value"] == b"1"
        assert read.kv.get("app/secret/k")[1]["Value"] == b"s"
        with pytest.raises(ACLPermissionDenied):
            write.kv.get("app/secret/k")  # the deny rule inside the write prefix
        for who, change, key, kwargs in ((anon, "put", "app/x", {"value": "no"}),
                                         (read, "put", "app/x", {"value": "no"}),
                                         (write, "put", "app/secret/k", {"value": "no"}),
                                         (write, "put", "other", {"value": "no"}), (read, "delete", "app/x", {}),
                                         (write, "delete", "app/", {"recurse": True})):
            with pytest.raises(ACLPermissionDenied):
                getattr(who.kv, change)(key, **kwargs)
        assert write.kv.put(f"app/{node.node_id}", node.node_id) is True
        assert anon.kv.put(f"app/{node.node_id}", "per call", token=t["write"]) is True  # py-consul's token=
        assert anon.kv.delete(f"app/{node.node_id}", token=t["write"]) is True
        assert mgmt.kv.get("app/x")[1]["Value"] == b"1" and mgmt.kv.get("app/secret/k")[1]["Value"] == b"s"
        # listings show only what the token may read (Consul filters)
        assert {e["Key"] for e in read.kv.get("app/", recurse=True)[1]} >= {"app/secret/k", "app/x"}
        assert "app/secret/k" not in [e["Key"] for e in write.kv.get("app/", recurse=True)[1]]
        assert "other" not in write.kv.get("", keys=True)[1] and "app/x" in write.kv.get("", keys=True)[1]
        assert anon.kv.get("", recurse=True)[1] is None
        # a transaction with one denied operation applies nothing
        ops = [{"KV": {"Verb": "set", "Key": f"app/txn-{node.node_id}", "Value": ""}},
               {"KV": {"Verb": "delete", "Key": "app/secret/k"}}]
        with pytest.raises(ClientError, match="409.*'key:write' on \\\\\"app/secret/k"):
            write.txn.put(ops)
        assert mgmt.kv.get(f"app/txn-{node.node_id}")[1] is None
        # snapshots need management; operator and ACL routes their permissions
        for denied in (write.snapshot.save, write.acl.token.list, read.acl.policy.list):
            with pytest.raises(ACLPermissionDenied):
                denied()
        assert mgmt.snapshot.save()[:8] == b"RAFTKVSN"
        # py-consul's operator.raft_config sends no token at all: asked directly
        for path in ("/v1/operator/raft/configuration", "/v1/raftkv/status"):
            status, body = call(node, "GET", path, t["write"])
            assert status == 403 and b"lacks permission 'operator:read'" in body
            assert call(node, "GET", path, t["mgmt"])[0] == 200
        assert call(node, "DELETE", "/v1/operator/raft/peer?id=nobody", t["read"])[0] == 403
        assert {p["Name"] for p in mgmt.acl.policy.list()} >= {"global-management", "app-read", "app-write"}
        assert len(mgmt.acl.token.list()) >= 4 and client(node).status.leader()  # /v1/status is open
        assert read.acl.token.read_self()["Description"] == "reader"


def test_acl_token_in_the_query_is_checked_on_both_fronts(acl_cluster):
    cluster, t = acl_cluster
    for node in cluster.nodes:
        assert call(node, "PUT", f"/v1/kv/app/q?token={t['read']}", body=b"v")[0] == 403
        assert call(node, "PUT", f"/v1/kv/app/q?token={t['write']}", body=b"v") == (200, b"true")
        assert call(node, "DELETE", f"/v1/kv/app/q?token={t['read']}")[0] == 403
        assert call(node, "GET", "/v1/kv/app/q", "not-a-token") == (403, b"ACL not found\n")
        assert call(node, "DELETE", f"/v1/kv/app/q?token={t['write']}") == (200, b"true")


def test_acl_blocking_query_is_refused_before_it_waits(acl_cluster):
    cluster, t = acl_cluster
    index, _ = client(cluster.nodes[0], t["read"]).kv.get("app/x")
    with ThreadPoolExecutor(1) as pool:
        refused = pool.submit(client(cluster.nodes[1]).kv.get, "app/x", index=index, wait="5m")
        with pytest.raises(ACLPermissionDenied):
            refused.result(timeout=30)  # a check after the wait would hold it for 5 minutes


def raftkv(*args: str, token: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAFTKV_HTTP_TOKEN", "CONSUL_HTTP_TOKEN")}
    if token:
        env["RAFTKV_HTTP_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True, text=True, timeout=60,
                          env=env)


def test_acl_cli_creates_a_policy_and_a_token_that_the_kv_commands_use(acl_cluster):
    cluster, t = acl_cluster
    addr = cluster.nodes[1].http
    made = raftkv("acl", "policy", "create", "-name", "cli-read", "-rules", 'key_prefix "cli/" { policy = "read" }',
                  "--addr", addr, token=t["mgmt"])
    assert made.returncode == 0 and "Name:         cli-read" in made.stdout, made.stderr
    made = raftkv("acl", "token", "create", "-description", "cli reader", "-policy-name", "cli-read",
                  "--addr", addr, token=t["mgmt"])
    assert made.returncode == 0, made.stderr
    secret = next(line.split()[1] for line in made.stdout.splitlines() if line.startswith("SecretID:"))
    assert raftkv("kv", "put", "cli/k", "v", "--addr", addr, token=t["mgmt"]).returncode == 0
    wait_until("the new token on every node", lambda: all(call(n, "GET", "/v1/acl/token/self", secret)[0] == 200
                                                           for n in cluster.nodes))
    got = raftkv("kv", "get", "cli/k", "--addr", cluster.nodes[2].http, "--token", secret)
    assert (got.returncode, got.stdout) == (0, "v\n"), got.stderr
    refused = raftkv("kv", "put", "cli/k", "w", "--addr", addr, "--token", secret)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert "lacks permission 'key:write'" in refused.stderr
    listed = raftkv("acl", "token", "list", "--addr", addr, token=t["mgmt"])
    assert "cli reader" in listed.stdout and secret not in listed.stdout  # a secret is shown once
    assert raftkv("acl", "policy", "list", "--addr", addr, token=secret).returncode == 1


def test_acl_state_survives_a_restart_of_the_whole_cluster(acl_cluster):
    cluster, t = acl_cluster
    mgmt = client(cluster.nodes[0], t["mgmt"])
    for i in range(25):  # past --snapshot-entries: the restart loads a snapshot holding the ACL state
        mgmt.kv.put(f"app/fill/{i}", "x")
    cluster.stop()
    cluster.start()
    wait_for_leader(cluster, t["mgmt"])
    for node in cluster.nodes:
        assert client(node, t["read"]).kv.get("app/x")[1]["Value"] == b"1"
        with pytest.raises(ACLPermissionDenied):
            client(node, t["read"]).kv.put("app/x", "no")
        with pytest.raises(ACLPermissionDenied, match=r"ACL bootstrap no longer allowed \(reset index: \d+\)"):
            client(node).acl.bootstrap()


def test_acl_initial_management_token_from_a_file_is_created_by_the_leader(tmp_path):
    secret_file = tmp_path / "mgmt.token"
    secret_file.write_text("initial-0123456789\n")
    single = Cluster(str(tmp_path / "one"), size=1,
                     extra_args=["--acl", "deny", "--acl-initial-management-token-file", str(secret_file)])
    single.start()
    try:
        node = single.nodes[0]
        wait_until("the initial management token", lambda: call(node, "GET", "/v1/acl/token/self",
                                                                "initial-0123456789")[0] == 200, 30,
                   explain=single.logs)
        assert client(node, "initial-0123456789").kv.put("any/key", "v") is True
        with pytest.raises(ACLPermissionDenied, match="ACL bootstrap no longer allowed"):
            client(node).acl.bootstrap()
        with open(node.log_path) as log:
            assert "initial-0123456789" not in log.read()  # the secret never reaches the log
    finally:
        single.stop()
