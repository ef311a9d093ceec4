"""`raftkv chaos --attach`: the experiment on nodes it did not start, driven only by the
commands of a node file (here: shell commands that kill and start local node processes)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

from tests.support.cluster import Cluster


def node_commands(n) -> dict[str, str]:
    """Shell commands that start, kill, pause and resume one local node process."""
    serve = [sys.executable, "-m", "api.cli", "serve", "--id", n.node_id, "--raft", n.raft, "--http", n.http,
             "--data-dir", n.data_dir, "--peers", ",".join(n.peers), *n.extra_args]
    pattern = shlex.quote(f"serve --id {n.node_id} --raft {n.raft}")
    background = f"{shlex.join(serve)} >> {shlex.quote(n.log_path)} 2>&1 &"
    return {"start": f"sh -c {shlex.quote(background)}", "kill": f"pkill -KILL -f {pattern}",
            "pause": f"pkill -STOP -f {pattern}", "resume": f"pkill -CONT -f {pattern}"}


def test_chaos_attached_to_running_nodes_kills_and_restarts_them_through_the_file(tmp_path):
    cluster = Cluster(str(tmp_path / "nodes"))
    commands = {n.node_id: node_commands(n) for n in cluster.nodes}
    lines = []
    for n in cluster.nodes:
        lines += ["[[node]]", f"id = {json.dumps(n.node_id)}", f"http = {json.dumps(n.http)}",
                  *(f"{action} = {json.dumps(cmd)}" for action, cmd in commands[n.node_id].items()), ""]
    config = tmp_path / "nodes.toml"
    config.write_text("\n".join(lines))
    out = tmp_path / "report"
    try:
        for n in cluster.nodes:
            subprocess.run(shlex.split(commands[n.node_id]["start"]), check=True)
        cluster.leader(timeout=30, among=cluster.nodes)  # started by the file's commands: no Popen to ask
        r = subprocess.run([sys.executable, "-m", "api.cli", "chaos", "--attach", str(config), "--schedule", "failover",
                            "--duration", "22", "--out", str(out)], capture_output=True, text=True, timeout=240)
    finally:
        for n in cluster.nodes:
            subprocess.run(shlex.split(commands[n.node_id]["kill"]))
    report = json.loads((out / "chaos.json").read_text())
    print(r.stdout, r.stderr[-2000:], (out / "chaos.md").read_text())
    assert r.returncode == 0 and "chaos: PASS" in r.stdout
    kills = [f for f in report["faults"] if f["kind"] == "kill-leader"]
    assert len(kills) >= 2 and report["skipped_faults"] == {}
    assert all(f["new_leader_after_s"] is not None for f in kills), "each kill was followed by a new leader"
    assert report["verdict"]["lost_acknowledged_writes"] == [] and report["verdict"]["acknowledged_unique_writes"] > 10
