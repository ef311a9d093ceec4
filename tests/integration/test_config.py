"""A node configured by a TOML file and RAFTKV_* variables only, its JSON log, and bad configuration."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tomllib

import pytest
import requests

from tests.integration.test_bad_input import assert_one_line_failure
from tests.support.cluster import HOST, free_ports
from tests.support.wait import wait_until

SECRET = "5ec7e7" * 8
TOKEN = "0f1e2d3c-management-token"


def clean_env(**extra: str) -> dict:
    """This process's environment without RAFTKV_* variables, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("RAFTKV_")}, **extra}


NODE_ENV = {"RAFTKV_CLUSTER_SECRET": SECRET, "RAFTKV_ACL_INITIAL_MANAGEMENT": TOKEN, "RAFTKV_LOG_FORMAT": "json",
            "RAFTKV_MAX_VALUE_BYTES": "1024"}


def serve(*args: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "api.cli", "serve", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or clean_env())


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    root = tmp_path_factory.mktemp("configured")
    raft, http = free_ports(2)
    config = root / "node.toml"
    config.write_text(f'id = "cfg1"\nraft = "{HOST}:{raft}"\nhttp = "{HOST}:{http}"\ndata_dir = "{root / "data"}"\n'
                      'acl = "deny"\nlog_level = "debug"\nmax_value_bytes = 100  # RAFTKV_MAX_VALUE_BYTES wins\n'
                      "snapshot_entries = 20\n")
    log_path = root / "node.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=log, env=clean_env(**NODE_ENV))
    url = f"http://{HOST}:{http}"
    try:
        wait_until("the node to lead", lambda: requests.get(f"{url}/v1/status/leader", timeout=1).json(),
                   timeout=30, explain=log_path.read_text)
        yield {"url": url, "proc": proc, "log": log_path, "config": config, "raft": f"{HOST}:{raft}",
               "http": f"{HOST}:{http}"}
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(15)


def put(url: str, key: str, body: bytes) -> requests.Response:
    return requests.put(f"{url}/v1/kv/{key}", data=body, headers={"X-Consul-Token": TOKEN}, timeout=10)


def test_serve_from_a_toml_file_and_env_only_serves_over_http(node):
    url = node["url"]
    # the management token came from the env, once the leader created it
    wait_until("the initial management token", lambda: put(url, "hello", b"world").status_code == 200, timeout=20)
    r = requests.get(f"{url}/v1/kv/hello", params={"raw": "", "token": TOKEN}, timeout=10)
    assert (r.status_code, r.content) == (200, b"world")
    assert requests.get(f"{url}/v1/kv/hello", timeout=10).status_code == 403  # acl = "deny" from the file
    assert put(url, "big", b"x" * 1000).status_code == 200  # env's 1024, not the file's 100
    r = put(url, "bigger", b"x" * 2000)
    assert r.status_code == 413, r.text
    status = requests.get(f"{url}/v1/raftkv/status", params={"token": TOKEN}, timeout=10).json()
    assert status["id"] == "cfg1" and status["raft"] == node["raft"]


def test_print_config_of_file_and_env_masks_secrets_and_loads_back(node, tmp_path):
    first = serve("--config", str(node["config"]), "--print-config", env=clean_env(**NODE_ENV))
    assert first.returncode == 0 and first.stderr == "", first.stderr
    assert SECRET not in first.stdout and TOKEN not in first.stdout and "********" in first.stdout
    assert f'id = "cfg1"  # file {node["config"]}:id' in first.stdout
    assert "max_value_bytes = 1024  # env RAFTKV_MAX_VALUE_BYTES" in first.stdout
    printed = tmp_path / "printed.toml"
    printed.write_text(first.stdout)
    second = serve("--config", str(printed), "--print-config")
    assert second.returncode == 0, second.stderr
    assert tomllib.loads(second.stdout) == tomllib.loads(first.stdout)


def test_bad_configuration_is_one_line_and_exit_2(node, tmp_path):
    def failing(toml: str, *fragments: str, env: dict | None = None) -> str:
        path = tmp_path / "bad.toml"
        path.write_text(toml)
        result = serve("--config", str(path), env=env)
        assert_one_line_failure(result, *fragments)
        assert result.returncode == 2 and not (tmp_path / "data").exists()  # nothing started, nothing written
        return result.stderr

    raft, http = free_ports(2)
    ok = f'id = "x"\nraft = "{HOST}:{raft}"\nhttp = "{HOST}:{http}"\ndata_dir = "{tmp_path / "data"}"\n'
    failing(ok + "snapshot_entrys = 5\n", "bad.toml:snapshot_entrys: unknown key", "did you mean 'snapshot_entries'")
    failing(ok + 'request_timeout = "5s"\n', "bad.toml:request_timeout: expected a number, not a string ('5s')")
    failing(ok, "RAFTKV_SNAPSHOT_RETAIN: expected an integer, not 'three'",
            env=clean_env(RAFTKV_SNAPSHOT_RETAIN="three"))
    # the running node holds these ports: named with the address and where it was set
    failing(ok.replace(f"{HOST}:{raft}", node["raft"]), f"cannot listen on raft address {node['raft']} "
            f"({tmp_path / 'bad.toml'}:raft)")
    failing(ok, f"cannot listen on HTTP address {node['http']} (RAFTKV_HTTP)", env=clean_env(RAFTKV_HTTP=node["http"]))
    # with JSON logs on, the reason is a JSON line too
    doc = json.loads(failing(ok, '"level": "ERROR"', env=clean_env(RAFTKV_HTTP=node["http"], RAFTKV_LOG_FORMAT="json")))
    assert doc["msg"].startswith(f"raftkv serve: cannot listen on HTTP address {node['http']} (RAFTKV_HTTP)")
    result = serve("--config", str(tmp_path / "absent.toml"))
    assert_one_line_failure(result, "cannot read config file", "absent.toml: No such file or directory")
    assert result.returncode == 2


def test_json_log_has_one_object_per_line_with_requests_at_debug_and_no_secrets(node):
    url = node["url"]
    wait_until("the initial management token", lambda: put(url, "warm", b"1").status_code == 200, timeout=20)
    for i in range(25):  # past snapshot_entries = 20: a snapshot is written and logged
        assert put(url, f"k{i}", b"v").status_code == 200
    assert requests.get(f"{url}/v1/kv/k1", params={"token": TOKEN, "recurse": ""}, timeout=10).status_code == 200
    assert requests.get(f"{url}/v1/status/leader", timeout=10).status_code == 200
    with socket.create_connection((HOST, int(url.rpartition(":")[2])), timeout=10) as raw:  # aiohttp logs it
        raw.sendall(b"GET /v1/kv/a?recurse HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n")
        assert b" 400 " in raw.recv(4096).split(b"\r\n")[0]
    proc = node["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    text = node["log"].read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert all({"ts", "level", "logger", "msg"} <= doc.keys() for doc in lines)
    assert SECRET not in text and TOKEN not in text and "token=" not in text
    requests_logged = [doc for doc in lines if doc["logger"] == "raftkv.http"]
    assert all(doc["level"] == "DEBUG" for doc in requests_logged)
    by_path = {(doc["method"], doc["path"]): doc for doc in requests_logged}
    assert by_path[("PUT", "/v1/kv/k3")]["status"] == 200 and by_path[("PUT", "/v1/kv/k3")]["remote"] == HOST
    assert by_path[("GET", "/v1/kv/k1")]["status"] == 200 and by_path[("GET", "/v1/kv/k1")]["ms"] >= 0
    assert ("GET", "/v1/status/leader") in by_path
    messages = [doc["msg"] for doc in lines]
    assert any(m.startswith("leader: this node") for m in messages), messages
    assert any(m.startswith("membership at index") for m in messages), messages
    snapshots = [doc for doc in lines if doc["msg"].startswith("snapshot at index") and "written" in doc["msg"]]
    assert snapshots and snapshots[0]["bytes"] > 0 and snapshots[0]["index"] >= 20
    mistakes = [doc for doc in lines if doc["logger"] == "aiohttp.server"]  # aiohttp's own records are JSON too
    assert len(mistakes) == 1 and "malformed request" in mistakes[0]["msg"], mistakes
    others = [doc for doc in lines if doc["level"] not in ("DEBUG", "INFO") and doc not in mistakes]
    assert not others, "a healthy run logs no other warnings"
