"""A served node loads only what serving needs: `raftkv serve` imports nothing from `loadtest`
(whose chaos lab, for one, registers an atexit handler).

The node is started as the test clusters start theirs, with one addition: a `sitecustomize`
module on its PYTHONPATH that writes the names in `sys.modules` to a file when the process
exits. The node serves a write and a read, then stops on SIGTERM as usual."""

from __future__ import annotations

import urllib.request

from tests.support.cluster import Cluster

SITECUSTOMIZE = """\
import atexit
import os
import sys


def _write_loaded_modules():
    with open(os.environ["RAFTKV_TEST_MODULES_OUT"], "w") as f:
        f.write("\\n".join(sorted(sys.modules)))


atexit.register(_write_loaded_modules)
"""


def test_a_served_node_imports_nothing_from_loadtest(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    out = tmp_path / "modules.txt"
    env = ["env", f"PYTHONPATH={site}", f"RAFTKV_TEST_MODULES_OUT={out}"]
    cluster = Cluster(str(tmp_path / "cluster"), size=1, prefixes=[env]).start()
    try:
        node = cluster.leader()
        put = urllib.request.Request(f"{node.url}/v1/kv/greeting", data=b"hello", method="PUT")
        with urllib.request.urlopen(put, timeout=10) as resp:
            assert resp.read() == b"true"
        with urllib.request.urlopen(f"{node.url}/v1/kv/greeting?raw", timeout=10) as resp:
            assert resp.read() == b"hello"
    finally:
        cluster.stop()
    assert node.proc.returncode == 0, cluster.logs()
    modules = set(out.read_text().split())
    assert {"api.serve", "node.raft"} <= modules  # the list is the served node's (api.cli runs as __main__)
    assert not {m for m in modules if m == "loadtest" or m.startswith("loadtest.")}
