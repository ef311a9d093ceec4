"""The short chaos scenario of `raftkv chaos` (leader kill, leader pause, follower kill,
whole-cluster kill, under a recorded workload) must end with a passing verdict."""

from __future__ import annotations

import json
import subprocess
import sys


def test_chaos_short_scenario_passes_and_writes_its_reports(tmp_path):
    r = subprocess.run([sys.executable, "-m", "api.cli", "chaos", "--schedule", "short", "--duration", "60",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=240)
    report = json.loads((tmp_path / "chaos.json").read_text())
    print(r.stdout, (tmp_path / "chaos.md").read_text())
    assert [f["kind"] for f in report["faults"]] == ["kill-leader", "pause-leader", "kill-follower", "kill-all"]
    assert report["verdict"]["linearizable"], report["verdict"]["keys"]
    assert report["verdict"]["lost_acknowledged_writes"] == []
    assert report["verdict"]["acknowledged_unique_writes"] > 50
    assert r.returncode == 0 and "chaos: PASS" in r.stdout
    assert "chaos: t=" in r.stderr  # progress while it ran
    assert (tmp_path / "chaos.md").exists()
    png = tmp_path / "chaos.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
