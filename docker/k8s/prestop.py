"""preStop hook of the raftkv StatefulSet: leave the cluster only when scaled away.

Kubernetes runs preStop before every stop of a pod: a scale-down, but also a rolling update, a
drain, an eviction, a `kubectl delete pod`. Only a scale-down must remove the member; a pod that
restarts comes back under the same name with its data and must still be a voter (removed, it
would be refused by its cluster). The StatefulSet tells them apart: on a scale-down its
spec.replicas is already below this pod's ordinal. So this hook reads the StatefulSet (RBAC:
get on that one object, rbac.yaml) and runs `raftkv members remove <pod>` through the client
service (any ready node forwards it to the leader; a leader being removed hands leadership over
first) only then. When the StatefulSet cannot be read, or is itself being deleted, the pod stays
a member.

Bounded: tries for REMOVE_FOR_S, within terminationGracePeriodSeconds (statefulset.yaml).
Standard library only (the image's Python).
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request

ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
API = "https://kubernetes.default.svc"
TOKEN_FILE = "/etc/raftkv/acl-management-token"  # the StatefulSet's RAFTKV_ACL_INITIAL_MANAGEMENT_TOKEN_FILE
CLIENT_SERVICE = "http://raftkv.{namespace}.svc.cluster.local:8500"  # services.yaml
REMOVE_FOR_S = 40.0


def statefulset_of(pod: str) -> tuple[str, int]:
    """("raftkv", 3) for pod "raftkv-3"."""
    name, _, ordinal = pod.rpartition("-")
    return name, int(ordinal)


def scaled_away(ordinal: int, statefulset: dict | None) -> bool:
    """Whether the StatefulSet no longer wants the pod of this ordinal (None: it could not be read)."""
    if statefulset is None or statefulset.get("metadata", {}).get("deletionTimestamp"):
        return False
    return ordinal >= int(statefulset.get("spec", {}).get("replicas", 1))


def read_statefulset(namespace: str, name: str) -> dict | None:
    try:
        with open(f"{ACCOUNT}/token") as f:
            token = f.read().strip()
        context = ssl.create_default_context(cafile=f"{ACCOUNT}/ca.crt")
        request = urllib.request.Request(f"{API}/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return json.load(response)
    except (OSError, ValueError) as exc:
        print(f"prestop: cannot read statefulset {name}: {exc}; staying a member", file=sys.stderr)
        return None


def leave(pod: str, namespace: str) -> int:
    env = dict(os.environ)
    try:
        with open(TOKEN_FILE) as f:
            env["RAFTKV_HTTP_TOKEN"] = f.read().strip()
    except OSError:
        pass  # ACLs off
    command = ["raftkv", "members", "remove", pod, "--addr", CLIENT_SERVICE.format(namespace=namespace)]
    deadline = time.monotonic() + REMOVE_FOR_S
    while True:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        sys.stderr.write(done.stdout + done.stderr)
        if done.returncode == 0 or f"no member with id {pod}" in done.stderr:  # removed (an answer lost)
            return 0
        if time.monotonic() > deadline:
            return done.returncode
        time.sleep(2)  # another change in progress (one at a time), or no leader for a moment


def main() -> int:
    pod, namespace = os.environ["POD_NAME"], os.environ["POD_NAMESPACE"]
    name, ordinal = statefulset_of(pod)
    if not scaled_away(ordinal, read_statefulset(namespace, name)):
        return 0
    print(f"prestop: {name} scaled below {pod}: leaving the cluster", file=sys.stderr)
    return leave(pod, namespace)


if __name__ == "__main__":
    sys.exit(main())
