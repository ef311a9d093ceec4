"""No Docker engine runs here, so the Docker files are checked by reading them: every command,
flag, environment variable, port and path in them exists and agrees with the others. The
variables a file sets are read as `raftkv serve` flags (tests/support/serve_env.py)."""

from __future__ import annotations

import os
import re

import pytest
import yaml

from api.cli import build_parser
from api.cluster_secret import http_refusal, refusal
from tests.support.serve_env import NOT_SERVE_FLAGS, flag_of, parse_serve, serve_flags

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
DOCKER = os.path.join(ROOT, "docker")
NODES = ["n1", "n2", "n3"]


def read(*path: str) -> str:
    with open(os.path.join(ROOT, *path)) as f:
        return f.read()


def load_yaml(*path: str):
    return yaml.safe_load(read(*path))


def load_compose() -> dict:
    return load_yaml("docker", "compose.yaml")


def port(hostport: str) -> int:
    return int(hostport.rpartition(":")[2])


def openapi_paths() -> set[str]:
    return set(load_yaml("api", "openapi.yaml")["paths"])


def dockerfile_env() -> dict[str, str]:
    """The image's ENV defaults (one `ENV A=x \\ B=y` instruction)."""
    text = read("docker", "Dockerfile").replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("ENV ")]
    return dict(item.split("=", 1) for item in line.split()[1:])


def node_env(name: str) -> dict[str, str]:
    return {**dockerfile_env(), **load_compose()["services"][name]["environment"]}


def test_every_raftkv_variable_in_docker_files_is_a_serve_flag_or_read_where_said():
    names: set[str] = set()
    for folder, _, files in os.walk(DOCKER):
        for file in files:
            with open(os.path.join(folder, file), errors="replace") as f:
                names |= set(re.findall(r"\bRAFTKV_[A-Z0-9_]*[A-Z0-9]", f.read()))
    assert {"RAFTKV_ID", "RAFTKV_RAFT", "RAFTKV_HTTP", "RAFTKV_PEERS"} <= names
    flags = serve_flags()
    for name in sorted(names):
        if name in NOT_SERVE_FLAGS:
            assert f'"{name}"' in read(NOT_SERVE_FLAGS[name]), name
        else:
            assert flag_of(name) in flags, name


# -- compose --------------------------------------------------------------------------------------


def test_compose_nodes_are_configured_by_environment_and_name_each_other_as_peers():
    compose = load_compose()
    services = compose["services"]
    rafts = {name: parse_serve(node_env(name)).raft for name in NODES}
    assert len(set(rafts.values())) == 3
    for name in NODES:
        svc, args = services[name], parse_serve(node_env(name))
        assert "command" not in svc and "entrypoint" not in svc  # the image's `raftkv serve`
        assert args.id == name and args.http == f"{name}:8500"
        assert set(",".join(args.peers).split(",")) == {rafts[o] for o in NODES if o != name}
        # Raft: under a name that exists only on the internal network, and never published
        raft_host = args.raft.rpartition(":")[0]
        assert svc["networks"]["raft"]["aliases"] == [raft_host] and raft_host not in services
        assert args.raft_bind is None  # listens on that name's address: the raft network's
        assert compose["networks"]["raft"]["internal"] is True
        # HTTP: published on loopback only, on the port it listens on
        (published,) = svc["ports"]
        assert published == f"127.0.0.1:{8500 + int(name[1])}:{port(args.http_bind)}"
        assert port(args.http) == port(args.http_bind)
        assert args.data_dir == "/data" and svc["volumes"] == [f"{name}-data:/data"]
        # Raft beyond loopback: only with the cluster secret, which compose mounts
        assert refusal(args.raft, (), args.insecure_raft) is not None
        assert args.cluster_secret_file == "/run/secrets/cluster-secret" and svc["secrets"] == ["cluster-secret"]
        # HTTP beyond loopback without ACLs or client certificates: only as the operator's explicit word
        assert http_refusal(args.http_bind, args.acl, args.tls_verify_incoming, insecure=False) is not None
        assert args.insecure_http
    for svc in services.values():
        assert all(p.startswith("127.0.0.1:") for p in svc.get("ports", [])), "publish on loopback only"
        assert not any(str(p).endswith(":7001") for p in svc.get("ports", [])), "Raft is never published"
    assert compose["secrets"]["cluster-secret"] == {"file": "./cluster.secret"}
    assert "docker/cluster.secret" in read(".gitignore").split()


def test_compose_locust_service_targets_every_node_with_our_locustfile():
    locust = load_compose()["services"]["locust"]
    assert "/app/loadtest/locustfiles/locustfile.py" in locust["command"]
    assert os.path.exists(os.path.join(ROOT, "loadtest", "locustfiles", "locustfile.py"))
    https = {parse_serve(node_env(name)).http for name in NODES}
    assert set(locust["environment"]["RAFTKV_NODES"].split(",")) == https
    assert locust["command"][locust["command"].index("--host") + 1].removeprefix("http://") in https


def test_dockerfile_installs_the_project_and_serves_from_the_environment():
    text = read("docker", "Dockerfile")
    assert text.startswith("# ") and "FROM python:3.11" in text
    for folder in ("node", "api", "snapshots", "loadtest"):
        assert f"COPY {folder} ./{folder}" in text
    assert "pip install" in text and 'ENTRYPOINT ["raftkv"]' in text and 'CMD ["serve"]' in text
    # not root, and healthy only when ready, on the port the image listens on
    assert "USER raftkv" in text and text.index("USER raftkv") < text.index("ENTRYPOINT")
    image = dockerfile_env()
    assert "/data" in text.split("VOLUME")[1].split()[0] and image["RAFTKV_DATA_DIR"] == "/data"
    (healthcheck,) = [line for line in text.splitlines() if "/readyz" in line]
    assert f"http://127.0.0.1:{port(image['RAFTKV_HTTP_BIND'])}/readyz" in healthcheck
    assert {"/readyz", "/livez"} <= openapi_paths()
    exposed = {int(p) for line in text.splitlines() if line.startswith("EXPOSE ") for p in line.split()[1:]}
    assert exposed == {port(image["RAFTKV_HTTP_BIND"]), port(parse_serve(node_env("n1")).raft)}


def test_prometheus_scrapes_every_node_and_grafana_reads_prometheus():
    compose = load_compose()
    services = compose["services"]
    config = load_yaml("docker", "prometheus", "prometheus.yml")
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert set(job["static_configs"][0]["targets"]) == {parse_serve(node_env(n)).http for n in NODES}
    prometheus = services["prometheus"]
    assert prometheus["volumes"] == ["./prometheus:/etc/prometheus:ro"]
    assert prometheus["ports"] == ["127.0.0.1:9090:9090"]
    assert config["rule_files"] == ["alerts.yml"]  # beside prometheus.yml: docker/prometheus/alerts.yml
    # a `raftkv up` cluster: its nodes' HTTP ports, from up's own defaults
    local = load_yaml("docker", "prometheus", "prometheus-local.yml")
    up = build_parser(["up"]).parse_args(["up"])
    assert local["scrape_configs"][0]["static_configs"][0]["targets"] == [
        f"127.0.0.1:{up.http_port + i}" for i in range(3)]
    assert local["rule_files"] == ["alerts.yml"] and local["scrape_configs"][0]["metrics_path"] == "/metrics"
    own = services["prometheus-local"]
    assert own["network_mode"] == "host" and "--web.listen-address=127.0.0.1:9091" in own["command"]
    assert "--config.file=/etc/prometheus/prometheus-local.yml" in own["command"]
    # Grafana: Prometheus as its data source, the dashboard where its provider looks
    grafana = services["grafana"]
    (source,) = load_yaml("docker", "grafana", "provisioning", "datasources", "prometheus.yml")["datasources"]
    assert source["url"] == "http://prometheus:" + prometheus["ports"][0].rpartition(":")[2]
    (provider,) = load_yaml("docker", "grafana", "provisioning", "dashboards", "raftkv.yml")["providers"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert os.path.dirname(mounts["./grafana/raftkv-dashboard.json"]) == provider["options"]["path"]
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]


def test_the_monitoring_files_the_compose_file_mounts_exist():
    """docker/grafana/raftkv-dashboard.json and docker/prometheus/alerts.yml come with the metrics
    work (issue 13); until they are in the tree this test waits for them."""
    missing = [p for p in ("docker/grafana/raftkv-dashboard.json", "docker/prometheus/alerts.yml")
               if not os.path.exists(os.path.join(ROOT, p))]
    if missing or "/metrics" not in openapi_paths():
        pytest.skip(f"not in this tree yet: {missing or '/metrics in api/openapi.yaml'}")
    assert load_yaml("docker", "prometheus", "alerts.yml")["groups"]
    assert read("docker", "grafana", "raftkv-dashboard.json").lstrip().startswith("{")


def test_chaos_attach_config_drives_the_compose_services():
    from loadtest.harness import attach

    cluster = attach.load(os.path.join(DOCKER, "chaos-nodes.toml"))
    services = load_compose()["services"]
    for node in cluster.nodes:
        published = services[node.node_id]["ports"][0]  # "127.0.0.1:8501:8500"
        assert published.rsplit(":", 1)[0] == node.http
        assert node.can("kill", "start", "pause", "resume", "stop")
        for command in node.commands.values():
            assert command.startswith("docker compose -f docker/compose.yaml ") and command.endswith(f" {node.node_id}")
