"""Nodes `raftkv chaos` did not start: described in a small TOML file, driven by commands.

    # chaos-nodes.toml: the Docker compose cluster, for example
    [[node]]
    id = "n1"
    http = "127.0.0.1:8501"
    kill = "docker kill raftkv-n1"      # SIGKILL
    start = "docker start raftkv-n1"    # after a kill
    pause = "docker pause raftkv-n1"    # SIGSTOP
    resume = "docker unpause raftkv-n1" # SIGCONT
    stop = "docker stop raftkv-n1"      # SIGTERM (rolling restart); optional

`http` is required; the Raft address is asked from the node itself. A node without `kill`
and `start` cannot be killed, one without `pause` and `resume` cannot be paused: faults that
need a missing command are skipped and the report says so. Network faults need nodes the
tool starts itself (they live in namespaces it creates).
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import tomllib

from loadtest.harness.cluster import Cluster, NodeProcess

COMMANDS = ("kill", "start", "pause", "resume", "stop")


class ConfigError(ValueError):
    pass


class AttachedNode(NodeProcess):
    """A node reached over HTTP and controlled by the commands of the config file."""

    def __init__(self, node_id: str, http: str, commands: dict[str, str]) -> None:
        super().__init__(node_id, raft="", http=http, data_dir="", log_path="", peers=[])
        self.commands = commands
        self.killed = False

    def can(self, *actions: str) -> bool:
        return all(a in self.commands for a in actions)

    def _run(self, action: str) -> None:
        done = subprocess.run(shlex.split(self.commands[action]), capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{self.node_id}: `{self.commands[action]}` failed: {done.stderr.strip()[:200]}")

    def start(self) -> None:
        self._run("start")
        self.killed = False

    def alive(self) -> bool:
        return not self.killed

    def signal(self, sig: int) -> None:
        self._run({signal.SIGSTOP: "pause", signal.SIGCONT: "resume"}[sig])

    def kill(self) -> None:
        self._run("kill")
        self.killed = True

    def stop(self) -> None:
        self._run("stop" if "stop" in self.commands else "kill")
        self.killed = True


class AttachedCluster(Cluster):
    """Cluster's waits and leader lookup over nodes someone else runs; never stops them."""

    def __init__(self, nodes: list[AttachedNode]) -> None:
        self.root, self.nodes = "", nodes

    def start(self) -> AttachedCluster:
        for n in self.nodes:  # learn each node's identity in Raft from the node itself
            st = self.wait_for(f"{n.node_id} at {n.http} to answer", n.status, timeout=30)
            n.raft = st["raft"]
        return self

    def stop(self) -> None:
        pass

    def logs(self) -> str:
        return "(attached nodes: see their own logs)"


def load(path: str) -> AttachedCluster:
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    entries = doc.get("node")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: no [[node]] tables")
    nodes = []
    for i, entry in enumerate(entries, 1):
        unknown = set(entry) - {"id", "http", *COMMANDS}
        if unknown:
            raise ConfigError(f"{path}: node {i}: unknown field(s) {', '.join(sorted(unknown))}")
        if not isinstance(entry.get("http"), str) or ":" not in entry["http"]:
            raise ConfigError(f"{path}: node {i}: `http` must be HOST:PORT")
        commands = {k: entry[k] for k in COMMANDS if k in entry}
        nodes.append(AttachedNode(str(entry.get("id", f"n{i}")), entry["http"], commands))
    if len({n.node_id for n in nodes}) != len(nodes):
        raise ConfigError(f"{path}: node ids must be unique")
    return AttachedCluster(nodes)
