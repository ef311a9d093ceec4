"""A local 3-node etcd cluster for side-by-side benchmarks (Debian's `etcd-server`, 3.4).

Never a dependency of raftkv or of CI: `raftkv bench --etcd` and `loadtest.bench.compare` use it
when the `etcd` binary is on PATH, with etcd's default settings (its WAL is fsynced).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request

from loadtest.harness.cluster import HOST, free_ports


class EtcdCluster:
    def __init__(self, root: str, size: int = 3) -> None:
        if shutil.which("etcd") is None:
            raise RuntimeError("etcd is not installed (apt-get install etcd-server)")
        ports = free_ports(2 * size)
        self.root = root
        self.clients = [f"{HOST}:{p}" for p in ports[:size]]
        self.peers = [f"{HOST}:{p}" for p in ports[size:]]
        self.procs: list[subprocess.Popen] = []

    def start(self) -> EtcdCluster:
        initial = ",".join(f"e{i}=http://{p}" for i, p in enumerate(self.peers))
        for i, (client, peer) in enumerate(zip(self.clients, self.peers, strict=True)):
            log = open(os.path.join(self.root, f"e{i}.log"), "wb")  # noqa: SIM115 - lives with the process
            self.procs.append(subprocess.Popen([
                "etcd", "--name", f"e{i}", "--data-dir", os.path.join(self.root, f"e{i}"),
                "--listen-client-urls", f"http://{client}", "--advertise-client-urls", f"http://{client}",
                "--listen-peer-urls", f"http://{peer}", "--initial-advertise-peer-urls", f"http://{peer}",
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", "raftkv-bench",
            ], stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                req = urllib.request.Request(f"http://{self.clients[0]}/v3/kv/put", method="POST",
                                             data=json.dumps({"key": "cHJvYmU=", "value": "MQ=="}).encode())
                with urllib.request.urlopen(req, timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()  # no etcd left running behind the error
        raise RuntimeError(f"etcd cluster did not come up within 30 s (logs in {self.root})")

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
