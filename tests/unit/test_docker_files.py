"""No Docker engine runs here, so the Docker files are checked by reading them."""

import os

import yaml

from api.cli import build_parser
from api.cluster_secret import http_refusal, refusal

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def load_compose() -> dict:
    with open(os.path.join(ROOT, "docker", "compose.yaml")) as f:
        return yaml.safe_load(f)


def test_compose_runs_three_nodes_that_name_each_other_as_peers():
    services = load_compose()["services"]
    nodes = {name: svc for name, svc in services.items() if name != "locust"}
    assert sorted(nodes) == ["n1", "n2", "n3"]
    parser = build_parser()
    rafts = {}
    for name, svc in nodes.items():
        args = parser.parse_args(svc["command"])  # every flag exists and parses
        assert args.command == "serve" and args.id == name
        rafts[name] = args.raft
        peers = set(",".join(args.peers).split(","))
        assert peers == {f"{other}:7001" for other in nodes if other != name}
        assert args.data_dir == "/data" and svc["volumes"] == [f"{name}-data:/data"]
        # HTTP published on loopback only; the Raft port never published
        assert all(p.startswith("127.0.0.1:") and p.endswith(":8500") for p in svc["ports"])
        # Raft listens beyond loopback: only with the cluster secret, which compose mounts
        assert refusal(args.raft_bind, (), args.insecure_raft) is not None
        # HTTP beyond loopback without ACLs or client certificates: only as the operator's explicit word
        assert http_refusal(args.http_bind, args.acl, args.tls_verify_incoming, insecure=False) is not None
        assert args.insecure_http
        assert args.cluster_secret_file == "/run/secrets/cluster-secret" and svc["secrets"] == ["cluster-secret"]
    assert len(set(rafts.values())) == 3
    assert load_compose()["secrets"]["cluster-secret"] == {"file": "./cluster.secret"}
    with open(os.path.join(ROOT, ".gitignore")) as f:
        assert "docker/cluster.secret" in f.read().split()


def test_compose_locust_service_targets_every_node_with_our_locustfile():
    locust = load_compose()["services"]["locust"]
    assert "/app/loadtest/locustfiles/locustfile.py" in locust["command"]
    assert set(locust["environment"]["RAFTKV_NODES"].split(",")) == {"n1:8500", "n2:8500", "n3:8500"}


def test_dockerfile_installs_the_project_and_runs_raftkv():
    with open(os.path.join(ROOT, "docker", "Dockerfile")) as f:
        text = f.read()
    assert text.startswith("# ") and "FROM python:3.11" in text
    for folder in ("node", "api", "snapshots", "loadtest"):
        assert f"COPY {folder} ./{folder}" in text
    assert "pip install" in text and 'ENTRYPOINT ["raftkv"]' in text
    # not root, and healthy only when ready (api/health.py serves /readyz on the compose HTTP port)
    assert "USER raftkv" in text and text.index("USER raftkv") < text.index("ENTRYPOINT")
    healthcheck = next(line for line in text.splitlines() if "/readyz" in line)
    assert "http://127.0.0.1:8500/readyz" in healthcheck
    compose_http = {svc["command"][svc["command"].index("--http-bind") + 1] for name, svc in
                    load_compose()["services"].items() if name != "locust"}
    assert compose_http == {"0.0.0.0:8500"}


def test_chaos_attach_config_drives_the_compose_services():
    from loadtest.harness import attach

    cluster = attach.load(os.path.join(ROOT, "docker", "chaos-nodes.toml"))
    services = load_compose()["services"]
    for node in cluster.nodes:
        published = services[node.node_id]["ports"][0]  # "127.0.0.1:8501:8500"
        assert published.rsplit(":", 1)[0] == node.http
        assert node.can("kill", "start", "pause", "resume", "stop")
        for command in node.commands.values():
            assert command.startswith("docker compose -f docker/compose.yaml ") and command.endswith(f" {node.node_id}")
