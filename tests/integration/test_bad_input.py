"""Bad input gets a clear status and one line, changes nothing, and crashes no node."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import requests

from tests.support.cluster import HOST, free_ports


def test_http_rejects_bad_requests_with_a_reason_and_changes_nothing(cluster):
    node = cluster.nodes[1]
    url = f"{node.url}/v1/kv"
    cases = [
        (requests.put, f"{url}/{'k' * 513}", {}, b"x", 400, "invalid key"),
        (requests.put, f"{url}/bad-flags", {"flags": "abc"}, b"x", 400, "invalid flags"),
        (requests.put, f"{url}/neg-flags", {"flags": "-1"}, b"x", 400, "invalid flags"),
        (requests.put, f"{url}/bad-cas", {"cas": "1.5"}, b"x", 400, "invalid cas"),
        (requests.put, f"{url}/big", {}, b"x" * (512 * 1024 + 1), 413, "value too large"),
        (requests.put, f"{url}/", {}, b"x", 400, "missing key"),
        (requests.get, f"{url}/", {}, None, 400, "missing key"),
        (requests.get, f"{url}/k", {"stale": "", "consistent": ""}, None, 400, "Cannot specify"),
        (requests.delete, f"{url}/k", {"recurse": "", "cas": "3"}, None, 400, "Conflicting flags"),
        (requests.put, f"{url}/locked", {"acquire": "abc"}, b"x", 400, "invalid session"),
    ]
    for method, u, params, body, status, reason in cases:
        r = method(u, params=params, data=body, timeout=10)
        assert r.status_code == status, (u[:80], params, r.status_code, r.text)
        assert reason in r.text and r.text.count("\n") == 1 and "Traceback" not in r.text
    r = requests.get(f"{url}/", params={"recurse": ""}, timeout=10)
    assert r.status_code == 404, "nothing may have been written by a rejected request"
    assert all(n.alive() for n in cluster.nodes)
    assert requests.put(f"{url}/{'k' * 512}", data=b"ok", timeout=10).json() is True  # the limit itself is fine
    assert requests.put(f"{url}/big", data=b"x" * (512 * 1024), timeout=10).json() is True


def run_cli(*args, env=None, timeout=20):
    return subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def assert_one_line_failure(result, *fragments):
    assert result.returncode != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_serve_reports_a_port_in_use_in_one_line(tmp_path):
    raft, http = free_ports(2)
    with socket.socket() as busy:
        busy.bind((HOST, raft))
        busy.listen()
        r = run_cli("serve", "--id", "n1", "--raft", f"{HOST}:{raft}", "--http", f"{HOST}:{http}",
                    "--data-dir", str(tmp_path / "d"))
    assert_one_line_failure(r, f"cannot listen on raft address {HOST}:{raft} (--raft)")
    assert r.returncode == 2
    with socket.socket() as busy:
        busy.bind((HOST, http))
        busy.listen()
        r = run_cli("serve", "--id", "n1", "--raft", f"{HOST}:{raft}", "--http", f"{HOST}:{http}",
                    "--data-dir", str(tmp_path / "d2"), "--log-level", "ERROR")
    assert_one_line_failure(r, f"cannot listen on HTTP address {HOST}:{http} (--http)")
    assert r.returncode == 2 and not os.path.exists(tmp_path / "d2")  # found before Raft starts


def test_serve_reports_bad_peers_and_addresses_in_one_line(tmp_path):
    raft, http = free_ports(2)
    base = ["serve", "--id", "n1", "--raft", f"{HOST}:{raft}", "--http", f"{HOST}:{http}", "--data-dir", str(tmp_path)]
    # a peer's name may resolve later (tests/integration/test_dns_names.py); a malformed one never does
    assert_one_line_failure(run_cli(*base, "--peers", "http://n2:7002"), "neither an IP address nor a host name")
    assert_one_line_failure(run_cli(*base, "--peers", "n2 :7002"), "neither an IP address nor a host name")
    r = run_cli("serve", "--id", "n1", "--raft", f"no-such-host.invalid:{raft}", "--http", f"{HOST}:{http}",
                "--data-dir", str(tmp_path))
    assert_one_line_failure(r, "--raft", "cannot resolve host 'no-such-host.invalid'")  # listened on: must resolve
    assert r.returncode == 2
    assert_one_line_failure(run_cli(*base, "--peers", "127.0.0.1"), "is not HOST:PORT")
    assert_one_line_failure(run_cli(*base, "--peers", "127.0.0.1:99999"), "invalid port")


def test_serve_refuses_raft_beyond_loopback_without_a_secret_and_bad_secrets_in_one_line(tmp_path):
    raft, http = free_ports(2)
    base = ["serve", "--id", "n1", "--raft", f"{HOST}:{raft}", "--http", f"{HOST}:{http}", "--data-dir", str(tmp_path)]
    r = run_cli(*base, "--raft-bind", f"0.0.0.0:{raft}")
    assert_one_line_failure(r, "refusing to listen for Raft on 0.0.0.0", "--cluster-secret-file", "--insecure-raft")
    assert r.returncode == 2 and not os.listdir(tmp_path)  # nothing started, nothing written
    r = run_cli(*base, "--http-bind", f"0.0.0.0:{http}")
    assert_one_line_failure(r, "refusing to listen for HTTP on 0.0.0.0", "--acl deny", "--insecure-http")
    short = tmp_path / "short.secret"
    short.write_text("hunter2\n")
    assert_one_line_failure(run_cli(*base, "--cluster-secret-file", str(short)), "at least 16 bytes")
    assert_one_line_failure(run_cli(*base, "--cluster-secret-file", str(tmp_path / "absent")),
                            "--cluster-secret-file", "No such file")
    assert_one_line_failure(run_cli(*base, env={"RAFTKV_CLUSTER_SECRET": "short"}), "RAFTKV_CLUSTER_SECRET",
                            "at least 16 bytes")


def test_serve_reports_an_unwritable_data_folder_in_one_line(tmp_path):
    raft, http = free_ports(2)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = run_cli("serve", "--id", "n1", "--raft", f"{HOST}:{raft}", "--http", f"{HOST}:{http}",
                "--data-dir", str(blocker / "sub"))
    assert_one_line_failure(r, "data folder", "not writable")


def test_serve_refuses_a_data_folder_of_another_node(tmp_path, shared_cluster):
    other = shared_cluster.nodes[0]
    raft, http = free_ports(2)
    r = run_cli("serve", "--id", "n9", "--raft", f"{HOST}:{raft}", "--http", f"{HOST}:{http}",
                "--data-dir", other.data_dir)
    assert_one_line_failure(r, "belongs to node n1")


def test_cli_errors_are_one_line_with_non_zero_exit(shared_cluster):
    env = {"RAFTKV_ADDR": shared_cluster.nodes[0].http}
    assert_one_line_failure(run_cli("kv", "get", "absent", env=env), "not found")
    assert_one_line_failure(run_cli("kv", "put", "k" * 600, "v", env=env), "HTTP 400", "invalid key")
    (port,) = free_ports(1)
    assert_one_line_failure(run_cli("kv", "get", "x", "--addr", f"{HOST}:{port}"), "cannot reach")
    assert_one_line_failure(run_cli("status", "--addr", f"{HOST}:{port}"), "cannot reach")


def test_cli_put_get_list_delete_and_status(shared_cluster):
    env = {"RAFTKV_ADDR": shared_cluster.nodes[2].http}
    assert run_cli("kv", "put", "cfg/a", "alpha", env=env).stdout.strip() == "OK: cfg/a"
    assert run_cli("kv", "put", "cfg/b", "beta", "--flags", "3", env=env).returncode == 0
    assert run_cli("kv", "get", "cfg/a", env=env).stdout == "alpha\n"
    detailed = run_cli("kv", "get", "cfg/b", "--detailed", env=env).stdout
    assert "Flags: 3" in detailed and "Value: beta" in detailed
    listing = run_cli("kv", "list", "cfg/", env=env).stdout.splitlines()
    assert [line.split("\t")[0] for line in listing] == ["cfg/a", "cfg/b"]
    assert_one_line_failure(run_cli("kv", "put", "cfg/a", "x", "--cas", "1", env=env), "check-and-set failed")
    assert run_cli("kv", "delete", "cfg/", "--recurse", env=env).returncode == 0
    assert run_cli("kv", "list", "cfg/", env=env).stdout == ""
    status = run_cli("status", env=env).stdout
    assert "leader: 127.0.0.1:" in status and status.count("127.0.0.1") >= 7 and "leader " in status
    assert "LAG" in status and "HEALTH" in status
    doc = json.loads(run_cli("status", "--json", env=env).stdout)
    assert doc["leader"] and len(doc["nodes"]) == 3 and sum(n["state"] == "leader" for n in doc["nodes"]) == 1
    assert all(n["health"] in ("ok", "applying") and n["lag"] >= 0 for n in doc["nodes"]), doc
    watched = run_cli("status", "--watch", "0.1", "--count", "2", env=env).stdout
    assert watched.count("leader: 127.0.0.1:") == 2 and "(every 0.1s, Ctrl-C to stop)" in watched
    assert_one_line_failure(run_cli("status", "--watch", "0", env=env), "must be positive")
