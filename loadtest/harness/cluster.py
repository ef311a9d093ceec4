"""Local raftkv clusters of real node processes on 127.0.0.1 with free ports.

Used by the tests, the benchmarks and the experiments. Waits are on observable state with
deadlines (never bare sleeps); when a wait times out the nodes' logs are printed.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

HOST = "127.0.0.1"
NAMESPACE_RAFT_PORT, NAMESPACE_HTTP_PORT = 7000, 8500


def free_ports(count: int) -> list[int]:
    socks, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind((HOST, 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


@dataclass
class NodeProcess:
    node_id: str
    raft: str
    http: str
    data_dir: str
    log_path: str
    peers: list[str]
    extra_args: list[str] = field(default_factory=list)
    prefix: list[str] = field(default_factory=list)  # e.g. `ip netns exec NS`: run the node in a namespace
    proc: subprocess.Popen | None = None
    client_ssl: ssl.SSLContext | None = None  # the node serves HTTPS (TLS options in extra_args): how to call it
    # what runs `serve`: this interpreter's raftkv, or another build's `raftkv` script (benchmarks of old commits)
    command: list[str] = field(default_factory=lambda: [sys.executable, "-m", "api.cli"])

    @property
    def url(self) -> str:
        return f"{'https' if self.client_ssl else 'http'}://{self.http}"

    def start(self) -> None:
        cmd = [*self.command, "serve", "--id", self.node_id, "--raft", self.raft,
               "--http", self.http, "--data-dir", self.data_dir, "--peers", ",".join(self.peers), *self.extra_args]
        log = open(self.log_path, "ab")
        log.write(f"--- start {time.time():.3f}\n".encode())
        log.flush()
        self.proc = subprocess.Popen([*self.prefix, *cmd], stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def status(self, timeout: float = 1.0) -> dict | None:
        try:
            with urllib.request.urlopen(f"{self.url}/v1/raftkv/status", timeout=timeout,
                                        context=self.client_ssl) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None


class Cluster:
    secret_args: list[str] = []  # serve's cluster-secret option, for nodes that join this cluster

    def __init__(self, root: str, size: int = 3, extra_args: list[str] | None = None,
                 hosts: list[str] | None = None, prefixes: list[list[str]] | None = None,
                 secret: bool = True, client_ssl: ssl.SSLContext | None = None,
                 command: list[str] | None = None) -> None:
        """`hosts`: one address per node, each in its own network namespace (fixed ports then,
        as every namespace has its own), with `prefixes` the commands that enter them.
        `secret`: the nodes share a cluster secret, as `raftkv up` makes them (False: a plain Raft wire).
        `client_ssl`: the nodes serve HTTPS (their TLS options in `extra_args`); the harness
        calls them with this context. `command`: what runs `serve` (default: this interpreter's
        `python -m api.cli`), e.g. another venv's `bin/raftkv` to measure an older build."""
        os.makedirs(root, exist_ok=True)
        self.root = root
        if secret:
            path = os.path.join(root, "cluster.secret")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
            self.secret_args = ["--cluster-secret-file", path]
        extra_args = [*self.secret_args, *(extra_args or [])]
        if hosts is not None:  # in namespaces the test made: HTTP beyond loopback, as the test's own lab
            extra_args.append("--insecure-http")
        if hosts is None:
            ports = free_ports(2 * size)
            rafts = [f"{HOST}:{p}" for p in ports[:size]]
            https = [f"{HOST}:{p}" for p in ports[size:]]
        else:
            rafts = [f"{h}:{NAMESPACE_RAFT_PORT}" for h in hosts]
            https = [f"{h}:{NAMESPACE_HTTP_PORT}" for h in hosts]
        self.nodes = [
            NodeProcess(f"n{i + 1}", rafts[i], https[i], os.path.join(root, f"n{i + 1}"),
                        os.path.join(root, f"n{i + 1}.log"), [r for r in rafts if r != rafts[i]],
                        list(extra_args), list(prefixes[i]) if prefixes else [], client_ssl=client_ssl,
                        **({"command": list(command)} if command else {}))
            for i in range(size)
        ]

    def start(self) -> Cluster:
        for n in self.nodes:
            n.start()
        return self

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def node_by_raft(self, raft: str) -> NodeProcess:
        return next(n for n in self.nodes if n.raft == raft)

    def logs(self) -> str:
        out = []
        for n in self.nodes:
            try:
                with open(n.log_path, errors="replace") as f:
                    out.append(f"===== {n.node_id} =====\n" + f.read()[-6000:])
            except OSError:
                pass
        return "\n".join(out)

    def wait_for(self, what: str, predicate, timeout: float = 20.0, interval: float = 0.05):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        print(self.logs())
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def leader(self, timeout: float = 20.0, among: list[NodeProcess] | None = None) -> NodeProcess:
        """The node that all live nodes agree leads, once it has published its HTTP address."""
        candidates = among or [n for n in self.nodes if n.alive()]

        def agreed():
            statuses = [n.status() for n in candidates]
            if any(s is None for s in statuses):
                return None
            leaders = {s["leader"] for s in statuses}
            if len(leaders) != 1 or None in leaders:
                return None
            leader = self.node_by_raft(leaders.pop())
            st = next((s for s in statuses if s["raft"] == leader.raft), None)
            if st is None or st["state"] != "leader" or len(st["members"]) < len(self.nodes):
                return None
            return leader

        return self.wait_for("an agreed leader", agreed, timeout)

    def followers(self) -> list[NodeProcess]:
        leader = self.leader()
        return [n for n in self.nodes if n is not leader and n.alive()]

    def wait_applied(self, index: int, nodes: list[NodeProcess] | None = None, timeout: float = 20.0) -> None:
        targets = nodes or [n for n in self.nodes if n.alive()]

        def caught_up():
            return all((s := n.status()) is not None and s["applied_index"] >= index for n in targets)

        self.wait_for(f"applied index {index} on {[n.node_id for n in targets]}", caught_up, timeout)
