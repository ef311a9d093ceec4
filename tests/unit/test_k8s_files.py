"""No Kubernetes cluster runs here: docker/k8s/ is validated against the Kubernetes API's JSON
schemas (kubernetes-validate, offline), and read: every command, flag, variable, port, path
and name in it exists and agrees with the others and with the CLI."""

from __future__ import annotations

import copy
import functools
import importlib.util
import os
import re
import shutil
import stat
import subprocess

import kubernetes_validate
import pytest
import yaml

from api.cli import build_parser
from api.join import parse_join_urls
from tests.support.serve_env import parse_serve

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
K8S = os.path.join(ROOT, "docker", "k8s")
KUBERNETES_VERSION = "1.30.0"  # persistentVolumeClaimRetentionPolicy is beta and on by default since 1.27


@functools.cache
def _documents(name: str) -> tuple[dict, ...]:
    with open(os.path.join(K8S, name)) as f:
        return tuple(d for d in yaml.safe_load_all(f) if d)


def documents(name: str) -> list[dict]:
    return copy.deepcopy(list(_documents(name)))  # a test may change its copy


def kustomization() -> dict:
    (doc,) = documents("kustomization.yaml")
    return doc


def resources() -> dict[tuple[str, str], dict]:
    """(kind, name) -> manifest, for every file the kustomization applies."""
    return {(d["kind"], d["metadata"]["name"]): d for f in kustomization()["resources"] for d in documents(f)}


def statefulset() -> dict:
    return resources()[("StatefulSet", "raftkv")]


def container() -> dict:
    (c,) = statefulset()["spec"]["template"]["spec"]["containers"]
    return c


def pod_env(pod: str, namespace: str) -> dict[str, str]:
    """The container's variables as the kubelet gives them to `pod`: downward API values filled
    in, $(VAR) expanded from the variables before it."""
    fields = {"metadata.name": pod, "metadata.namespace": namespace}
    env: dict[str, str] = {}
    for var in container()["env"]:
        if "valueFrom" in var:
            env[var["name"]] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], var["value"])
    return env


def port(hostport: str) -> int:
    return int(hostport.rpartition(":")[2])


def named_port(name: str) -> int:
    return next(p["containerPort"] for p in container()["ports"] if p["name"] == name)


def load_prestop():
    spec = importlib.util.spec_from_file_location("prestop", os.path.join(K8S, "prestop.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_manifest_is_valid_against_the_kubernetes_schemas():
    names = [*kustomization()["resources"], "secret.example.yaml"]
    for name in names:
        for doc in documents(name):
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)  # raises on any mistake
    kinds = {kind for kind, _ in resources()}
    assert kinds == {"StatefulSet", "Service", "PodDisruptionBudget", "ServiceAccount", "Role", "RoleBinding"}
    # and a mistake is caught: the validator is not a no-op
    broken = statefulset()
    broken["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_applies_every_manifest_but_the_secret_example():
    k = kustomization()
    on_disk = {f for f in os.listdir(K8S) if f.endswith(".yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(k["resources"]) == on_disk
    (generated,) = k["configMapGenerator"]
    assert all(os.path.exists(os.path.join(K8S, f)) for f in generated["files"])
    volumes = {v["name"]: v for v in statefulset()["spec"]["template"]["spec"]["volumes"]}
    assert volumes["hooks"]["configMap"]["name"] == generated["name"]
    (image,) = k["images"]
    assert image["name"] == container()["image"]


def test_statefulset_pods_are_nodes_named_by_their_pod_dns_names():
    sts = statefulset()
    spec = sts["spec"]
    assert spec["replicas"] == 3 and spec["podManagementPolicy"] == "Parallel"
    headless = resources()[("Service", spec["serviceName"])]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    voters = int(pod_env("raftkv-0", "ns")["INITIAL_VOTERS"])
    assert voters == spec["replicas"]
    names = [f"raftkv-{i}.{spec['serviceName']}.ns.svc.cluster.local" for i in range(voters)]
    for i in range(voters):
        args = parse_serve(pod_env(f"raftkv-{i}", "ns"))  # every variable is a serve flag that parses
        assert args.id == f"raftkv-{i}" and args.raft == f"{names[i]}:{named_port('raft')}"
        assert args.http == f"{names[i]}:{named_port('http')}"
        assert sorted(",".join(args.peers).split(",")) == [f"{n}:{named_port('raft')}" for n in names]
        assert port(args.raft_bind) == named_port("raft") and port(args.http_bind) == named_port("http")
    env = {v["name"]: v for v in container()["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["RAFTKV_ID"]["value"] == "$(POD_NAME)"
    # a variable is expanded only from those defined before it
    order = [v["name"] for v in container()["env"]]
    for var in container()["env"]:
        for used in re.findall(r"\$\((\w+)\)", var.get("value", "")):
            assert order.index(used) < order.index(var["name"]), (var["name"], used)


def test_volumes_and_the_secret_are_where_the_variables_point():
    sts = statefulset()
    args = parse_serve(pod_env("raftkv-0", "ns"))
    mounts = {m["name"]: m["mountPath"] for m in container()["volumeMounts"]}
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]] == args.data_dir
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenScaled": "Delete", "whenDeleted": "Retain"}
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    (example,) = documents("secret.example.yaml")
    assert volumes["secret"]["secret"]["secretName"] == example["metadata"]["name"]
    for path in (args.cluster_secret_file, args.acl_initial_management_token_file):
        folder, key = os.path.split(path)
        assert folder == mounts["secret"] and key in example["stringData"]
    assert all(v.startswith("REPLACE-WITH-") for v in example["stringData"].values())  # never a real secret
    assert args.acl == "deny"  # HTTP beyond loopback: tokens required
    assert volumes["secret"]["secret"]["defaultMode"] & stat.S_IRGRP  # fsGroup reads it
    assert sts["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001
    with open(os.path.join(ROOT, "docker", "Dockerfile")) as f:
        assert "--uid 10001" in f.read()


def test_probes_and_services_use_the_health_routes_and_ports_the_node_serves():
    with open(os.path.join(ROOT, "api", "openapi.yaml")) as f:
        paths = set(yaml.safe_load(f)["paths"])
    c = container()
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez" and c["startupProbe"]["httpGet"]["path"] == "/livez"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["path"] in paths and c[probe]["httpGet"]["port"] == "http"
    # replay before HTTP answers is bounded by 600 s in api/serve.py: the startup probe waits that long
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 600
    selector = statefulset()["spec"]["selector"]["matchLabels"]
    assert statefulset()["spec"]["template"]["metadata"]["labels"] == selector
    client = resources()[("Service", "raftkv")]
    assert client["spec"]["selector"] == selector and not client["spec"].get("publishNotReadyAddresses")
    assert [(p["port"], p["targetPort"]) for p in client["spec"]["ports"]] == [(named_port("http"), "http")]
    headless = resources()[("Service", "raftkv-peers")]
    assert headless["spec"]["selector"] == selector
    assert {p["name"]: (p["port"], p["targetPort"]) for p in headless["spec"]["ports"]} == {
        "raft": (named_port("raft"), "raft"), "http": (named_port("http"), "http")}
    pdb = resources()[("PodDisruptionBudget", "raftkv")]
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}


def run_entry(tmp_path, pod: str) -> dict[str, str]:
    """The container's `sh -c` line for `pod`, with a stand-in `raftkv` that prints what it got."""
    stub = tmp_path / "raftkv"
    stub.write_text('#!/bin/sh\necho "ARGS=$*"\necho "JOIN=${RAFTKV_JOIN:-}"\n')
    stub.chmod(0o755)
    c = container()
    env = {**pod_env(pod, "ns"), "PATH": f"{tmp_path}:/usr/bin:/bin"}
    done = subprocess.run([*c["command"], *c["args"]], env=env, capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


def test_pods_beyond_the_initial_voters_join_through_the_client_service(tmp_path):
    voters = int(pod_env("raftkv-0", "ns")["INITIAL_VOTERS"])
    for i in range(voters):
        assert run_entry(tmp_path, f"raftkv-{i}") == {"ARGS": "serve", "JOIN": ""}
    out = run_entry(tmp_path, f"raftkv-{voters}")
    assert out["ARGS"] == "serve"
    (url,) = parse_join_urls(out["JOIN"])  # --join takes it
    assert url == f"http://raftkv.ns.svc.cluster.local:{named_port('http')}"
    args = parse_serve({**pod_env(f"raftkv-{voters}", "ns"), "RAFTKV_JOIN": out["JOIN"]})
    assert args.join == out["JOIN"] and args.id == f"raftkv-{voters}"


def test_prestop_removes_the_member_only_when_the_statefulset_was_scaled_below_it():
    prestop = load_prestop()
    assert prestop.statefulset_of("raftkv-3") == ("raftkv", 3)
    three = {"metadata": {"name": "raftkv"}, "spec": {"replicas": 3}}
    assert prestop.scaled_away(3, three) and prestop.scaled_away(4, three)
    assert not prestop.scaled_away(2, three)  # a restart, a rolling update, a drain: stays a member
    assert not prestop.scaled_away(3, None)  # the StatefulSet could not be read
    going = {"metadata": {"name": "raftkv", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"replicas": 0}}
    assert not prestop.scaled_away(0, going)  # the whole StatefulSet is deleted: its volumes stay


def test_prestop_runs_a_removal_the_cli_takes_through_the_client_service_in_time():
    prestop = load_prestop()
    sts = statefulset()
    c = container()
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["python", f"{mounts['hooks']}/prestop.py"]
    address = prestop.CLIENT_SERVICE.format(namespace="ns")
    assert address == f"http://raftkv.ns.svc.cluster.local:{named_port('http')}"
    args = build_parser(["members"]).parse_args(["members", "remove", "raftkv-3", "--addr", address])
    assert args.verb == "remove" and args.member == "raftkv-3"
    assert prestop.TOKEN_FILE == parse_serve(pod_env("raftkv-3", "ns")).acl_initial_management_token_file
    assert sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > prestop.REMOVE_FOR_S
    # its RBAC: read this StatefulSet, nothing more
    role = resources()[("Role", "raftkv-read-statefulset")]
    assert role["rules"] == [{"apiGroups": ["apps"], "resources": ["statefulsets"],
                              "resourceNames": [sts["metadata"]["name"]], "verbs": ["get"]}]
    binding = resources()[("RoleBinding", "raftkv-read-statefulset")]
    account = sts["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account}]
    assert ("ServiceAccount", account) in resources() and binding["roleRef"]["name"] == role["metadata"]["name"]
    with open(os.path.join(K8S, "prestop.py")) as f:
        assert "/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}" in f.read()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its built-in kustomize) is not installed")
def test_kustomize_builds_valid_manifests_that_mount_the_generated_hooks():
    done = subprocess.run(["kubectl", "kustomize", K8S], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    built = [d for d in yaml.safe_load_all(done.stdout) if d]
    for doc in built:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    (hooks,) = [d for d in built if d["kind"] == "ConfigMap"]
    with open(os.path.join(K8S, "prestop.py")) as f:
        assert hooks["data"]["prestop.py"] == f.read()
    (sts,) = [d for d in built if d["kind"] == "StatefulSet"]
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["hooks"]["configMap"]["name"] == hooks["metadata"]["name"]  # the generated name, hash and all
    assert all(d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "raftkv" for d in built)
